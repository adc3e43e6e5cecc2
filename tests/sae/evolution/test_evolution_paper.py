"""The paper's command (`scripts/sae_evolution.py --paper --saes ... --text ...`) on a tiny
random model with random SAELens-format TopK SAEs over a small text: both activity thresholds
in one run (recorded), the graph's edges from the full statistics (every pair at or above 0.1,
checked against numpy on the cached codes), Louvain and Leiden on the Pearson and the Jaccard
graph."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import jax
import numpy as np
import pytest
from _evolution_ref import jaccard_like, pearson_fast

import jaxlens
import sae
from sae.evolution import EvolutionConfig, codes, model_source, store, stream

SCRIPTS = Path(__file__).resolve().parents[3] / "scripts"


@pytest.fixture(scope="module")
def paper_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("paper")
    config = jaxlens.ModelConfig.tiny(vocab_size=259, n_layers=3)
    jaxlens.save_hf(root / "model", config, jaxlens.init_params(jax.random.key(0), config))
    model = model_source.open_model(root / "model")
    calibration = np.random.default_rng(0).integers(3, 259, (8, 128))
    cfgs, params = model_source.random_saes(model, calibration, d_sae=8 * config.d_model, l0=6)
    folders = [root / "saes" / f"blocks.{layer}.hook_resid_pre" for layer in range(3)]
    for folder, c, p in zip(folders, cfgs, params, strict=True):
        sae.save_saelens(folder, c, p)
    text = root / "text.txt"
    text.write_text(model_source.corpus_text(12, seed=1), encoding="utf-8")
    script = runpy.run_path(str(SCRIPTS / "sae_evolution.py"), run_name="sae_evolution")
    out = root / "run"
    script["main"](["--paper", "--model", str(root / "model"), "--text", str(text),
                    "--windows", "4", "--no-screenshot", "--out", str(out),
                    "--saes", *map(str, folders)])  # fmt: skip
    return out


def test_paper_preset_settings():
    cfg = EvolutionConfig.paper()
    assert (cfg.seq_len, cfg.threshold, cfg.extra_thresholds) == (128, 0.2, (0.0,))
    assert cfg.full_edges and cfg.extra_graphs == ("jaccard",) and cfg.edge_min == 0.1
    assert cfg.n_windows * cfg.seq_len >= 10_000_000 and cfg.include_bos
    with pytest.raises(ValueError, match="extra_thresholds"):
        EvolutionConfig.paper(extra_thresholds=(1.5,))


def test_both_thresholds_in_one_run_recorded(paper_run):
    saved = json.loads((paper_run / "stats" / "thresholds.json").read_text())
    assert saved["stats"]["jaccard"] == 0.2 and saved["stats/threshold_0"]["necessity"] == 0.0
    hi = store.load_neighbours(paper_run / "stats")
    lo = store.load_neighbours(paper_run / "stats" / "threshold_0")
    assert set(lo.row_values) == {"jaccard", "sufficiency", "necessity", "mutual_info"}
    assert "pearson" in hi.row_values and "decoder_cosine" in hi.row_values
    lat = _latents(paper_run)
    for nb, fraction in ((hi, 0.2), (lo, 0.0)):
        for p in range(lat.shape[0] - 1):
            ref = jaccard_like(lat[p], lat[p + 1], fraction)
            np.testing.assert_allclose(nb.row_values["jaccard"][p][:, 0], ref.max(1), atol=1e-6)
    assert (lat > 0).sum() > (lat > 0.2 * lat.max(1, keepdims=True)).sum()  # they differ


def _latents(run: Path) -> np.ndarray:
    return np.concatenate(list(codes.CodeCache(None, folder=run / "codes", dense=True)()), 1)


def test_edges_are_every_pair_above_the_threshold(paper_run):
    lat = _latents(paper_run)
    assert lat.shape[1] == 4 * 128  # BOS included
    summary = store.load_summary(paper_run / "stats" / "first_pass.npz")
    if jax.default_backend() == "cpu":  # "auto" took the co-active path
        assert stream.choose_accumulate("auto", summary, None) == "sparse"
    for p in range(lat.shape[0] - 1):
        for measure, ref in (
            ("pearson", pearson_fast(lat[p], lat[p + 1])),
            ("jaccard", jaccard_like(lat[p], lat[p + 1], 0.2)),
        ):
            rows, cols, values = store.load_edges(paper_run / "stats", measure, p)
            np.testing.assert_allclose(values, ref[rows, cols], atol=2e-5)
            clear = np.abs(ref - 0.1) > 1e-4  # away from the edge threshold
            want = {(a, b) for a, b in zip(*np.nonzero((ref >= 0.1) & clear), strict=True)}
            got = {(a, b) for a, b in zip(rows, cols, strict=True) if clear[a, b]}
            assert got == want and want, (measure, p)


def test_communities_on_the_pearson_and_the_jaccard_graph(paper_run):
    for tail in ("", "_jaccard"):
        comms = json.loads((paper_run / f"communities{tail}.json").read_text())
        assert set(comms) == {"louvain", "leiden"} and comms["louvain"], tail
        graph = json.loads((paper_run / f"graph{tail}.json").read_text())
        assert graph["links"], tail
