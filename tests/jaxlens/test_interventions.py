"""Interventions: no-ops, locality, the arithmetic of each edit, patching, splicing, gradients,
and no recompilation when only values change (counted with JAX's compile events)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlens import (
    Capture,
    HookSpecError,
    InputError,
    ModelConfig,
    ablate,
    forward,
    init_params,
    patch,
    splice,
    steer,
)

LENGTHS = (11, 7, 2)
ALL = Capture(sites=("resid_pre", "attn_out", "resid_mid", "mlp_out", "resid_post"))


@pytest.fixture(scope="module")
def model():
    config = ModelConfig.tiny()
    return config, init_params(jax.random.key(11), config)


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(5)
    t = max(LENGTHS)
    mask = np.arange(t)[None, :] >= (t - np.asarray(LENGTHS))[:, None]
    tokens = np.where(mask, rng.integers(3, 101, (len(LENGTHS), t)), 0).astype(np.int32)
    return tokens, mask.astype(np.int32)


def run(model, batch, interventions=None, capture=ALL):
    config, params = model
    tokens, mask = batch
    out = forward(
        params,
        tokens,
        config=config,
        attention_mask=mask,
        capture=capture,
        interventions=interventions,
    )
    return np.asarray(out.logits), {k: np.asarray(v) for k, v in out.captures.items()}


@pytest.fixture(scope="module")
def clean(model, batch):
    return run(model, batch)


@pytest.fixture(scope="module")
def directions():
    return np.random.default_rng(2).normal(size=(3, 40)).astype(np.float32)


def test_zero_interventions_are_exact_noops(model, batch, clean):
    zero = np.zeros(40, np.float32)
    edits = (
        steer("resid_post", (0, 1, 2), zero)
        + steer("attn_out", 1, zero, norm_scaled=True, positions="last")
        + ablate("mlp_out", 2, zero)
        + splice("resid_mid", 0, lambda p, x: x * p, jnp.float32(1.0))
    )
    logits, caps = run(model, batch, edits)
    np.testing.assert_array_equal(logits, clean[0])
    for site, value in caps.items():
        np.testing.assert_array_equal(value, clean[1][site], err_msg=site)


def test_steer_adds_at_its_layer_only(model, batch, clean, directions):
    v, alpha = directions[0], 2.5
    logits, caps = run(model, batch, steer("resid_mid", 1, v, alpha=alpha))
    for site in ("resid_pre", "attn_out"):  # before resid_mid in layer 1: untouched
        np.testing.assert_array_equal(caps[site][:2], clean[1][site][:2])
    np.testing.assert_array_equal(caps["resid_mid"][0], clean[1]["resid_mid"][0])
    np.testing.assert_allclose(
        caps["resid_mid"][1], clean[1]["resid_mid"][1] + alpha * v, atol=1e-6
    )
    assert np.abs(caps["resid_post"][2] - clean[1]["resid_post"][2]).max() > 1e-2
    assert np.abs(logits - clean[0]).max() > 1e-3


def test_norm_scaled_and_position_masks(model, batch, clean, directions):
    v = directions[1]
    span = np.zeros(batch[0].shape, bool)
    span[:, 4:6] = True
    edits = steer("resid_post", 0, v, alpha=0.3, norm_scaled=True, positions="last") + steer(
        "resid_pre", 2, v, alpha=-1.0, positions=span
    )
    _, caps = run(model, batch, edits)
    x = clean[1]["resid_post"][0]
    want = x.copy()
    want[:, -1] += 0.3 * np.linalg.norm(x[:, -1], axis=-1, keepdims=True) * v
    np.testing.assert_allclose(caps["resid_post"][0], want, atol=1e-5)
    # layer 2's resid_pre sees layer 0's edit through layer 1; the span edit comes on top
    before = caps["resid_post"][1]
    np.testing.assert_allclose(caps["resid_pre"][2], before - span[..., None] * v, atol=1e-6)


def test_ablate_projects_out(model, batch, clean, directions):
    u = directions[2] / np.linalg.norm(directions[2])
    _, caps = run(model, batch, ablate("attn_out", (0, 2), directions[2]))
    for layer in (0, 2):
        np.testing.assert_allclose(caps["attn_out"][layer] @ u, 0.0, atol=1e-5)
    x = clean[1]["attn_out"][0]
    np.testing.assert_allclose(caps["attn_out"][0], x - (x @ u)[..., None] * u, atol=1e-6)


def test_patch_with_own_activations_reproduces_clean(model, batch, clean):
    values = clean[1]["resid_post"][1]
    logits, _ = run(model, batch, patch("resid_post", 1, values))
    np.testing.assert_allclose(logits, clean[0], atol=1e-6)


def test_patch_from_other_run_at_positions(model, batch, clean):
    tokens, mask = batch
    other = (np.roll(tokens, 1, axis=1) * mask).astype(np.int32)
    other_logits, other_caps = run(model, (other, mask))
    logits, _ = run(model, batch, patch("resid_mid", 2, other_caps["resid_mid"][2]))
    real = mask.astype(bool)  # at layer 2 resid_mid every later value depends on it alone
    np.testing.assert_allclose(logits[real], other_logits[real], atol=1e-5)
    where = np.zeros_like(mask, bool)
    where[:, -1] = True
    _, caps = run(model, batch, patch("resid_mid", 2, other_caps["resid_mid"][2], mask=where))
    np.testing.assert_array_equal(caps["resid_mid"][2][:, -1], other_caps["resid_mid"][2][:, -1])
    np.testing.assert_array_equal(caps["resid_mid"][2][:, :-1], clean[1]["resid_mid"][2][:, :-1])


def _sae(key, d=40, n=23):
    k1, k2 = jax.random.split(key)
    return {"enc": jax.random.normal(k1, (d, n)) * 0.2, "dec": jax.random.normal(k2, (n, d)) * 0.2}


def _sae_fn(p, x):
    return jax.nn.relu(x @ p["enc"]) @ p["dec"]


def test_splice_with_and_without_error(model, batch, clean):
    sae = _sae(jax.random.key(3))
    _, caps = run(model, batch, splice("mlp_out", 1, _sae_fn, sae))
    want = np.asarray(_sae_fn(sae, clean[1]["mlp_out"][1]))
    np.testing.assert_allclose(caps["mlp_out"][1], want, atol=1e-5)
    logits, _ = run(model, batch, splice("mlp_out", 1, _sae_fn, sae, keep_error=True))
    np.testing.assert_allclose(logits, clean[0], atol=1e-5)

    config, params = model

    def loss(sae, keep_error):
        edit = splice("mlp_out", 1, _sae_fn, sae, keep_error=keep_error)
        out = forward(params, batch[0], config=config, attention_mask=batch[1], interventions=edit)
        return out.logits[:, -1, 5].sum()

    for keep_error in (False, True):
        grads = jax.grad(loss)(sae, keep_error)
        assert float(jnp.abs(grads["dec"]).max()) > 1e-4


def test_grad_wrt_steering_vector_matches_finite_differences(model, batch, directions):
    config, params = model

    def loss(v):
        out = forward(
            params,
            batch[0],
            config=config,
            attention_mask=batch[1],
            interventions=steer("resid_pre", 1, v, positions="last"),
        )
        return jax.nn.log_softmax(out.logits[:, -1])[:, 7].sum()

    v = jnp.asarray(directions[0]) * 0.1
    grad = jax.grad(loss)(v)
    u = jnp.asarray(directions[1] / np.linalg.norm(directions[1]))
    eps = 1e-2
    fd = (loss(v + eps * u) - loss(v - eps * u)) / (2 * eps)
    assert abs(float(grad @ u)) > 1e-3
    np.testing.assert_allclose(float(grad @ u), float(fd), rtol=2e-3, atol=1e-5)


class CompileCounter:
    """Counts XLA backend compilations while active."""

    def __init__(self):
        self.count = 0

    def __call__(self, event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            self.count += 1

    def __enter__(self):
        jax.monitoring.register_event_duration_secs_listener(self)
        return self

    def __exit__(self, *exc):
        jax.monitoring.unregister_event_duration_listener(self)


def test_new_values_never_recompile(model, batch, directions):
    config, params = model
    tokens, mask = batch
    sae = _sae(jax.random.key(4))
    rng = np.random.default_rng(0)

    def edits(i):
        layer = i % 3
        return (
            steer("resid_post", (layer, (layer + 1) % 3), directions[i % 3], alpha=float(i) + 0.5)
            + ablate("attn_out", layer, directions[(i + 1) % 3])
            + patch(
                "resid_pre",
                layer,
                rng.normal(size=tokens.shape + (40,)).astype(np.float32),
                mask=rng.random(tokens.shape) > 0.5,
            )
            + splice("mlp_out", layer, _sae_fn, jax.tree.map(lambda a: a * (i + 1), sae))
        )

    def call(i):
        out = forward(params, tokens, config=config, attention_mask=mask, interventions=edits(i))
        return np.asarray(out.logits)

    first = call(0)
    with CompileCounter() as counter:
        later = [call(i) for i in (1, 2, 3)]
    assert counter.count == 0
    assert all(np.abs(x - first).max() > 1e-3 for x in later)  # the new values took effect
    with CompileCounter() as counter:  # and the counter does see a new kind of request
        forward(
            params,
            tokens,
            config=config,
            attention_mask=mask,
            interventions=steer("mlp_out", 0, directions[0]),
        )
    assert counter.count >= 1


def test_intervention_errors(model, batch):
    config, params = model
    tokens, mask = batch
    with pytest.raises(HookSpecError, match="unknown hook site 'final'"):
        steer("final", 0, np.zeros(40))
    with pytest.raises(HookSpecError, match="expected d_model=40"):
        forward(params, tokens, config=config, interventions=steer("resid_pre", 0, np.ones(39)))
    with pytest.raises(HookSpecError, match="the model has 3"):
        forward(params, tokens, config=config, interventions=ablate("resid_pre", 3, np.ones(40)))
    with pytest.raises(HookSpecError, match="patch values have shape"):
        patch("resid_pre", 0, np.ones((11, 40)))
    with pytest.raises(HookSpecError, match="position mask has shape"):
        forward(
            params,
            tokens,
            config=config,
            interventions=steer("resid_pre", 0, np.ones(40), positions=np.ones((3, 4))),
        )
    with pytest.raises(HookSpecError, match="not callable"):
        splice("mlp_out", 0, "sae", {})
    with pytest.raises(InputError, match="expected jaxlens.Interventions"):
        forward(params, tokens, config=config, interventions={"resid_pre": np.ones(40)})
