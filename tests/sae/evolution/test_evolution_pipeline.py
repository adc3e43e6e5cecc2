"""`sae.evolution.run_study` end to end on a tiny random Llama (its own folder, without
tokenizer files, so the test does not depend on the built-in model's weights and its text is
bytes): SAEs on every layer from one forward per batch, the statistics (checked against numpy on
the very latents the source yields), lineage, graph, browser and run folder; a rerun resumes;
`rebuild_browser` adds prompts; a missing model directory is named in the error."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import pytest
from _evolution_ref import pearson

import jaxlens
import sae
from jaxlens.runs import webdriver
from sae.evolution import EvolutionConfig, model_source, pipeline, rebuild_browser, run_study, store

CFG = EvolutionConfig.quick(
    n_docs=20, seq_len=24, n_windows=16, expansion=2, k=4, sae_steps=8, sae_batch=64, batch=8,
    top_k=4, top_contexts=3, browser_latents=4,
)  # fmt: skip


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    model = tmp_path_factory.mktemp("model")
    config = jaxlens.ModelConfig.tiny(vocab_size=259, n_layers=3)
    jaxlens.save_hf(model, config, jaxlens.init_params(jax.random.key(0), config))
    out = tmp_path_factory.mktemp("evolution")
    trained_on = []  # the token windows the SAEs were trained on (the real trainer still runs)
    real = model_source.train_saes

    def spy(loaded, tokens, **kw):
        trained_on.append(np.asarray(tokens))
        return real(loaded, tokens, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(model_source, "train_saes", spy)
        head = run_study(model, out, config=CFG, progress=False)
    return model, out, head, trained_on


def test_headline_and_run_folder(result):
    _, out, head, _ = result
    layers = len(head["explained_variance"])
    assert layers == 3 and all(np.isfinite(head["explained_variance"]))
    assert [r["pair"] for r in head["turnover"]] == [f"{p}->{p + 1}" for p in range(layers - 1)]
    for row in head["turnover"]:
        for key in ("passed@0.95", "new@0.95", "passed@0.5", "passed@0.4"):
            assert 0.0 <= row[key] <= 1.0
    for name in (
        "report.md",
        "config.json",
        "turnover.json",
        "and_or.json",
        "graph.json",
        "communities.json",
        "unrepresented.json",
        "turnover_sankey.png",
        "browser/index.html",
        "browser/data.js",
        "saes/layer0/cfg.json",
    ):
        assert (out / name).exists(), name
    if webdriver.find_chromium():
        assert (out / "browser.png").read_bytes()[:4] == b"\x89PNG"
    graph = json.loads((out / "graph.json").read_text())
    assert graph["nodes"] and all(len(n["id"]) == 2 for n in graph["nodes"])


def test_neighbours_match_numpy_on_the_source_latents(result):
    model, out, _, _ = result
    src = pipeline.open_sources(model, out, CFG).latents
    lat = np.concatenate([np.asarray(x) for x in src()], axis=1)  # [L, T, N]
    nb = store.load_neighbours(out / "stats")
    summary = store.load_summary(out / "stats" / "first_pass.npz")
    assert summary.n_tokens == lat.shape[1]
    np.testing.assert_allclose(summary.max, lat.max(1), rtol=1e-5)
    for p in range(lat.shape[0] - 1):
        ref = pearson(lat[p], lat[p + 1])
        np.testing.assert_allclose(nb.row_values["pearson"][p][:, 0], ref.max(1), atol=1e-4)
        np.testing.assert_allclose(nb.col_values["pearson"][p][:, 0], ref.max(0), atol=1e-4)


def test_sae_metrics_are_on_windows_the_saes_never_saw(result):
    model, out, head, trained_on = result
    _, _, src, cfgs, params = pipeline.open_sources(model, out, CFG)
    held = pipeline.held_out_windows(len(src.tokens), src.batch)
    assert held == 4  # 16 windows, forward batches of 8: a quarter
    (train,) = trained_on
    np.testing.assert_array_equal(train, np.asarray(src.tokens[held:]))
    x = np.asarray(src.residuals(src.tokens[:held]))
    ev = [
        sae.metrics(p, x[i], config=c).explained_variance
        for i, (c, p) in enumerate(zip(cfgs, params, strict=True))
    ]
    np.testing.assert_allclose(head["explained_variance"], ev, rtol=1e-5)


def test_rerun_resumes_and_browser_rebuilds_with_prompts(result):
    model, out, head, _ = result
    again = run_study(model, out, config=CFG, progress=False, screenshot=False)
    assert again["turnover"] == head["turnover"]
    _, _ = rebuild_browser(out, prompts=["<b>my prompt</b>"], screenshot=False)
    data = (out / "browser" / "data.js").read_text()
    assert "\\u003cb\\u003emy prompt\\u003c/b\\u003e" in data and "<b>" not in data


@pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 (simulated) devices")
def test_run_on_a_mesh_matches_the_single_device_run(result, tmp_path):
    model, _, head, _ = result
    mesh = jaxlens.sharding.make_mesh(data=2, fsdp=2, tensor=2)  # weights loaded into shards
    sharded = run_study(model, tmp_path, config=CFG, mesh=mesh, progress=False, screenshot=False)
    np.testing.assert_allclose(sharded["explained_variance"], head["explained_variance"], atol=0.02)
    assert [r["pair"] for r in sharded["turnover"]] == [r["pair"] for r in head["turnover"]]


def test_a_model_without_tokenizer_files_reads_bytes(result):
    model, _, _, _ = result
    text = model_source.Text.for_model(model_source.open_model(model))
    assert text.tokenizer is None and text.encode("Ab") == [3 + 65, 3 + 98]


def test_the_default_model_is_the_builtin_one_and_a_missing_one_is_named(tmp_path):
    assert model_source.open_model().path == Path(jaxlens.BUILTIN_MODEL)
    missing = tmp_path / "no_such_model"
    with pytest.raises(FileNotFoundError, match="no_such_model"):
        run_study(missing, tmp_path / "out", config=CFG, progress=False, screenshot=False)
