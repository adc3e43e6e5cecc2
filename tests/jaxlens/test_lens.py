"""Logit lens and tuned lens: the last layer reads the model's own output, statistics over
real tokens only, and a trained tuned lens lowers the per-layer KL below the logit lens on
held-out rows; safetensors round trip; the run folder's report and plot."""

import jax
import numpy as np
import pytest

from jaxlens import Capture, ModelConfig, forward, init_params
from jaxlens.lens import (
    fit_tuned_lens,
    init_tuned_lens,
    layer_predictions,
    load_tuned_lens,
    logit_lens,
    save_tuned_lens,
    write_lens_report,
)


@pytest.fixture(scope="module")
def model():
    config = ModelConfig.tiny("gpt2")
    params = init_params(jax.random.key(3), config)
    # A "text stream" with structure: each row repeats a short random motif.
    rng = np.random.default_rng(0)
    motifs = rng.integers(3, 101, (96, 4))
    tokens = np.tile(motifs, (1, 4)).astype(np.int32)  # [96, 16]
    return config, params, tokens


def test_logit_lens_reads_the_model(model):
    config, params, tokens = model
    batch, mask = tokens[80:83], np.ones((3, 16), np.int32)
    mask[2, :5] = 0
    out = forward(
        params, batch, config=config, attention_mask=mask, capture=Capture(("resid_post",))
    )
    lens = np.asarray(logit_lens(params, out.captures["resid_post"], config=config))
    assert lens.shape == (3, 3, 16, 101)
    np.testing.assert_allclose(lens[-1], np.asarray(out.logits), atol=1e-5)
    # the identity translators are the logit lens (and the program the next test reuses)
    identity = init_tuned_lens(config)
    stats = layer_predictions(params, batch, config=config, attention_mask=mask, lens=identity)
    assert stats.kl.shape == (3,) and stats.top_tokens.shape == (3, 3, 16, 5)
    assert float(stats.kl[-1]) < 1e-6 < float(stats.kl[0])
    np.testing.assert_array_equal(stats.top_tokens[-1], np.argsort(-lens[-1], -1)[..., :5])
    # KL averaged over real tokens only
    kl = np.asarray(stats.kl_tokens)
    np.testing.assert_allclose(stats.kl, (kl * mask).sum((1, 2)) / mask.sum(), rtol=1e-5)


def test_tuned_lens_beats_logit_lens_on_held_out_rows(model, tmp_path):
    config, params, tokens = model
    train, held_out, mask = tokens[:80], tokens[80:83], np.ones((3, 16), np.int32)
    lens = fit_tuned_lens(
        params, train, config=config, key=jax.random.key(0), steps=12, batch_size=16, lr=1e-2
    )
    tuned = layer_predictions(params, held_out, config=config, attention_mask=mask, lens=lens)
    identity = init_tuned_lens(config)
    plain = layer_predictions(params, held_out, config=config, attention_mask=mask, lens=identity)
    assert np.all(np.asarray(tuned.kl[:-1]) < 0.8 * np.asarray(plain.kl[:-1])), (tuned, plain)
    from jaxlens.runs import RunFolder

    report = write_lens_report(RunFolder(tmp_path / "run"), plain, tuned=tuned, decode=str)
    text = report.read_text()
    assert (
        "lens_kl.png" in text
        and "tuned lens KL" in text
        and (tmp_path / "run/lens_kl.png").stat().st_size > 0
    )
    assert text.count("top tokens at the last position") == 2
    save_tuned_lens(tmp_path / "lens.safetensors", lens)
    back = load_tuned_lens(tmp_path / "lens.safetensors", config)
    for name in ("A", "b"):
        np.testing.assert_array_equal(np.asarray(back[name]), np.asarray(lens[name]))
    with pytest.raises(ValueError, match="this model needs"):
        load_tuned_lens(tmp_path / "lens.safetensors", ModelConfig.tiny("gpt2", d_model=44))
