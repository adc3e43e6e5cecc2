"""Activation capture: parity with HF hidden states, site algebra, in-jit reductions, errors.

HF's `output_hidden_states` holds the embeddings, each layer's output, and (last entry) the
output of the final norm; so `resid_pre[l] == hs[l]`, `resid_post[l] == hs[l + 1]` for l < L-1,
and `final == hs[L]`. Reductions are checked against numpy reductions of the `"none"` capture
under left padding (rows of different lengths).
"""

import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from _hf_models import left_padded_batch, make_hf_model, positions  # noqa: E402

from jaxlens import Capture, HookSpecError, ModelConfig, forward, init_params, load_hf  # noqa: E402

LENGTHS = (11, 7, 2)


@pytest.fixture(scope="module")
def batch():
    return left_padded_batch(vocab=101, lengths=LENGTHS, seed=3)


@pytest.fixture(scope="module")
def tiny():
    config = ModelConfig.tiny()
    import jax

    return config, init_params(jax.random.key(7), config)


@pytest.fixture(scope="module")
def full_capture(tiny, batch):
    """Every site of every layer, unreduced, on the left-padded batch."""
    config, params = tiny
    tokens, mask = batch
    capture = Capture(
        sites=("resid_pre", "attn_out", "resid_mid", "mlp_out", "resid_post", "final")
    )
    out = forward(params, tokens, config=config, attention_mask=mask, capture=capture)
    return {k: np.asarray(v) for k, v in out.captures.items()}


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_resid_matches_hf_hidden_states(arch, batch, tmp_path):
    model = make_hf_model(arch)
    model.save_pretrained(tmp_path / arch)
    config, params = load_hf(tmp_path / arch)
    tokens, mask = batch
    with torch.no_grad():
        hs = model(
            input_ids=torch.as_tensor(tokens, dtype=torch.long),
            attention_mask=torch.as_tensor(mask, dtype=torch.long),
            position_ids=torch.as_tensor(positions(mask), dtype=torch.long),
            output_hidden_states=True,
        ).hidden_states
    hs = [h.numpy() for h in hs]
    n = config.n_layers
    assert len(hs) == n + 1
    layers = (2, 0, 1)  # returned in the order asked
    capture = Capture(sites=("resid_pre", "resid_post", "final"), layers=layers)
    out = forward(params, tokens, config=config, attention_mask=mask, capture=capture)
    real = mask.astype(bool)
    assert out.captures["resid_pre"].shape == (3,) + tokens.shape + (config.d_model,)
    for i, layer in enumerate(layers):
        got_pre = np.asarray(out.captures["resid_pre"][i])
        np.testing.assert_allclose(got_pre[real], hs[layer][real], atol=1e-5, rtol=0)
        if layer < n - 1:
            got_post = np.asarray(out.captures["resid_post"][i])
            np.testing.assert_allclose(got_post[real], hs[layer + 1][real], atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.asarray(out.captures["final"])[real], hs[n][real], atol=1e-5)


def test_sites_compose(full_capture):
    c = full_capture
    np.testing.assert_allclose(c["resid_mid"], c["resid_pre"] + c["attn_out"], atol=1e-6)
    np.testing.assert_allclose(c["resid_post"], c["resid_mid"] + c["mlp_out"], atol=1e-6)
    np.testing.assert_array_equal(c["resid_pre"][1:], c["resid_post"][:-1])
    assert np.abs(c["attn_out"]).max() > 1e-3 and np.abs(c["mlp_out"]).max() > 1e-3


def _reduced(tiny, batch, capture):
    config, params = tiny
    tokens, mask = batch
    out = forward(params, tokens, config=config, attention_mask=mask, capture=capture)
    return {k: np.asarray(v) for k, v in out.captures.items()}


def test_reduce_last_is_last_real_token(tiny, batch, full_capture):
    got = _reduced(
        tiny, batch, Capture(sites=("resid_post", "final"), layers=(1, 2), reduce="last")
    )
    mask = batch[1].astype(bool)
    last = np.array([np.flatnonzero(row).max() for row in mask])
    rows = np.arange(len(last))
    np.testing.assert_allclose(got["resid_post"], full_capture["resid_post"][1:][:, rows, last])
    np.testing.assert_allclose(got["final"], full_capture["final"][rows, last], rtol=1e-6)


def test_reduce_mean_over_mask_and_span(tiny, batch, full_capture):
    mask = batch[1].astype(np.float64)
    want = (full_capture["mlp_out"] * mask[..., None]).sum(2) / mask.sum(1)[:, None]
    got = _reduced(tiny, batch, Capture(sites=("mlp_out",), reduce="mean"))["mlp_out"]
    np.testing.assert_allclose(got, want, atol=1e-6)

    span = np.zeros_like(mask)
    span[:, -3:-1] = 1.0  # two tokens before the last; row 2 has only one real one there
    weights = mask * span
    want = (full_capture["resid_mid"] * weights[..., None]).sum(2) / weights.sum(1)[:, None]
    capture = Capture(sites=("resid_mid",), reduce="mean", span=jnp.asarray(span))
    got = _reduced(tiny, batch, capture)["resid_mid"]
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_reduce_positions_gathers(tiny, batch, full_capture):
    idx = np.array([[0, 10, 4], [10, 9, 9], [9, 10, 10]], np.int32)
    got = _reduced(
        tiny,
        batch,
        Capture(sites=("attn_out",), layers=0, reduce="positions", positions=jnp.asarray(idx)),
    )["attn_out"]
    want = np.take_along_axis(full_capture["attn_out"][0], idx[:, :, None], axis=1)
    assert got.shape == (1, 3, 3, 40)
    np.testing.assert_array_equal(got[0], want)


def test_capture_errors(tiny, batch):
    config, params = tiny
    tokens, mask = batch
    with pytest.raises(HookSpecError, match="unknown hook site 'resid'"):
        Capture(sites=("resid",))
    with pytest.raises(HookSpecError, match="reduce='max'"):
        Capture(sites=("final",), reduce="max")
    with pytest.raises(HookSpecError, match="positions is required"):
        Capture(sites=("final",), reduce="positions")
    with pytest.raises(HookSpecError, match="out of range for a 3-layer model"):
        forward(params, tokens, config=config, capture=Capture(sites=("resid_pre",), layers=3))
    with pytest.raises(HookSpecError, match="span has shape"):
        bad = Capture(sites=("final",), reduce="mean", span=jnp.ones((3, 5)))
        forward(params, tokens, config=config, attention_mask=mask, capture=bad)
    with pytest.raises(HookSpecError, match="listed twice"):
        Capture(sites=("final",), layers=(1, 1))
