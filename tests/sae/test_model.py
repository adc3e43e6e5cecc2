"""Architectures: config checks, shapes, the sparse path against a dense reference, STE grads."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sae
from sae import model, sparse

D, N, B = 13, 37, 11


def _params(config: sae.SAEConfig, seed: int = 0) -> dict:
    k = jax.random.split(jax.random.key(seed), 4)
    params = model.init(k[0], config)
    params["b_enc"] = 0.1 * jax.random.normal(k[1], (N,))
    params["b_dec"] = 0.1 * jax.random.normal(k[2], (D,))
    thr = 0.2 + 0.1 * jax.random.uniform(k[3], (N,))
    if config.architecture == "jumprelu":
        params["log_threshold"] = jnp.log(thr)
    elif config.architecture == "batchtopk":
        params["threshold"] = thr
    return params


@pytest.mark.parametrize(
    "kwargs,field",
    [
        (dict(d_in=0, d_sae=4, architecture="relu"), "d_in"),
        (dict(d_in=4, d_sae=4, architecture="gated"), "architecture"),
        (dict(d_in=4, d_sae=4, architecture="topk"), "k"),
        (dict(d_in=4, d_sae=4, architecture="topk", k=5), "k"),
        (dict(d_in=4, d_sae=4, architecture="relu", k=2), "k"),
        (dict(d_in=4, d_sae=4, architecture="jumprelu", jumprelu_bandwidth=0.0), "bandwidth"),
        (dict(d_in=4, d_sae=4, architecture="relu", b_dec_init="median"), "b_dec_init"),
    ],
)
def test_config_errors_name_the_field(kwargs, field):
    with pytest.raises(sae.SAEConfigError, match=field):
        sae.SAEConfig(**kwargs)


def test_config_is_keyword_only_and_hashable():
    with pytest.raises(TypeError):
        sae.SAEConfig(4, 8, "relu")  # noqa
    a = sae.SAEConfig(d_in=4, d_sae=8, architecture="relu")
    assert hash(a) == hash(sae.SAEConfig(d_in=4, d_sae=8, architecture="relu"))


@pytest.mark.parametrize("arch", sae.ARCHITECTURES)
def test_init_shapes_and_unit_decoder(arch):
    config = sae.SAEConfig(d_in=D, d_sae=N, architecture=arch, k=3 if "topk" in arch else None)
    shapes = jax.eval_shape(lambda k: model.init(k, config), jax.random.key(0))
    assert {n: s.shape for n, s in shapes.items()} == model.param_shapes(config)
    params = model.init(jax.random.key(0), config)
    np.testing.assert_allclose(np.linalg.norm(params["W_dec"], axis=-1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(params["W_enc"], params["W_dec"].T)


def test_encode_rules():
    x = jax.random.normal(jax.random.key(5), (B, D))
    topk = sae.SAEConfig(d_in=D, d_sae=N, architecture="topk", k=4)
    p = _params(topk)
    f = sae.encode(p, x, config=topk)
    assert f.shape == (B, N)
    assert np.all(np.sum(np.asarray(f) > 0, axis=-1) <= 4)
    pre = np.asarray(model.pre_activations(p, x))
    kth = np.sort(pre, axis=-1)[:, -4]
    np.testing.assert_allclose(np.asarray(f), np.where(pre >= kth[:, None], np.maximum(pre, 0), 0))
    jump = sae.SAEConfig(d_in=D, d_sae=N, architecture="jumprelu")
    p = _params(jump)
    pre = np.asarray(model.pre_activations(p, x))
    expect = np.where(pre > np.exp(np.asarray(p["log_threshold"])), pre, 0.0)
    np.testing.assert_allclose(np.asarray(sae.encode(p, x, config=jump)), expect)
    x_hat = sae.decode(p, sae.encode(p, x, config=jump), config=jump)
    np.testing.assert_allclose(
        x_hat, expect @ np.asarray(p["W_dec"]) + np.asarray(p["b_dec"]), atol=1e-5
    )


def test_bad_inputs_raise_clear_errors():
    config = sae.SAEConfig(d_in=D, d_sae=N, architecture="relu")
    p = _params(config)
    with pytest.raises(sae.SAEInputError, match="d_in=13"):
        sae.encode(p, jnp.zeros((3, D + 1)), config=config)
    with pytest.raises(sae.SAEInputError, match="float"):
        sae.encode(p, jnp.zeros((3, D), jnp.int32), config=config)
    with pytest.raises(sae.SAEInputError, match="d_sae=37"):
        sae.decode(p, jnp.zeros((3, D)), config=config)


def _dense_reference_loss(params, x, dead, config):
    """The TopK/BatchTopK loss written densely: masks from the same selection."""
    pre = model.pre_activations(params, x)
    select = sparse.make_selector(
        config.architecture, config.k, config.row_cap, config.resolved_aux_k
    )
    codes = select(jax.lax.stop_gradient(pre), dead)

    def masked(code):
        keep = jnp.arange(code.idx.shape[1]) < code.n_slots
        on = jnp.where(keep & (code.vals != 0), 1.0, 0.0)
        mask = jnp.zeros_like(pre).at[sparse.token_of_slot(code), code.idx].max(on)
        return jax.nn.relu(pre) * mask

    x_hat = masked(codes[0]) @ params["W_dec"] + params["b_dec"]
    mse = jnp.mean(jnp.sum((x_hat - x) ** 2, -1))
    aux_hat = masked(codes[1]) @ params["W_dec"]
    residual = jax.lax.stop_gradient(x - x_hat)
    aux = jnp.mean(jnp.sum((aux_hat - residual) ** 2, -1))
    return mse + config.aux_k_coefficient * jnp.where(jnp.any(dead), aux, 0.0)


@pytest.mark.parametrize("arch", ["topk", "batchtopk"])
@pytest.mark.parametrize("with_dead", [False, True])
def test_sparse_path_matches_dense_reference(arch, with_dead):
    config = sae.SAEConfig(d_in=D, d_sae=N, architecture=arch, k=3, aux_k=5)
    params = _params(config, seed=1)
    x = jax.random.normal(jax.random.key(2), (B, D))
    dead = (jnp.arange(N) % 3 == 0) & with_dead

    def ours(p, x):
        parts = model.loss_parts(p, x, dead, config=config)
        return model.total_loss(parts, 1.0, config)

    got, got_g = jax.value_and_grad(ours, argnums=(0, 1))(params, x)
    want, want_g = jax.value_and_grad(_dense_reference_loss, argnums=(0, 1))(
        params, x, dead, config
    )
    np.testing.assert_allclose(got, want, rtol=1e-5)
    for name in params:
        np.testing.assert_allclose(got_g[0][name], want_g[0][name], atol=2e-5, err_msg=name)
    np.testing.assert_allclose(got_g[1], want_g[1], atol=2e-5)


def test_batchtopk_selection_is_the_batch_top():
    pre = jax.random.normal(jax.random.key(3), (B, N))
    code = sparse.batchtopk_code(pre, k=3, row_cap=N)  # no cap: exact
    dense = np.asarray(sparse.densify(code.vals, code, B, N))
    flat = np.sort(np.asarray(pre).ravel())[::-1][: B * 3]
    np.testing.assert_allclose(np.sort(dense[dense != 0])[::-1], flat)
    np.testing.assert_allclose(dense[dense != 0], np.asarray(pre)[dense != 0])
    rows = np.asarray(code.rows)
    assert np.all(np.diff(rows, axis=0) >= 0)  # every column's tokens ascend


def test_jumprelu_straight_through_gradients():
    bandwidth = 0.1
    pre = jnp.array([0.05, 0.18, 0.22, 0.5, -0.3])
    thr = jnp.array([0.2, 0.2, 0.2, 0.2, 0.2])
    g_pre, g_thr = jax.grad(lambda p, t: jnp.sum(model.jumprelu(p, t, bandwidth)), (0, 1))(pre, thr)
    np.testing.assert_allclose(g_pre, [0, 0, 1, 1, 0])
    # d/dt of p * H(p - t) ~ -(t / eps) * rect((p - t) / eps): only |p - t| < eps / 2 counts
    np.testing.assert_allclose(g_thr, [0, -2.0, -2.0, 0, 0], rtol=1e-6)
    g_pre, g_thr = jax.grad(lambda p, t: jnp.sum(model.step(p, t, bandwidth)), (0, 1))(pre, thr)
    np.testing.assert_allclose(g_pre, 0.0)
    np.testing.assert_allclose(g_thr, [0, -10.0, -10.0, 0, 0], rtol=1e-6)


def test_auxk_picks_the_largest_dead_latents():
    """AuxK's code against a numpy selection: per token, the k_aux largest among dead latents."""
    rng = np.random.default_rng(7)
    pre = rng.normal(size=(B, N)).astype(np.float32)
    for dead_ids, k_aux in (([1, 4, 9, 16, 20, 33, 36], 5), ([2, 30], 5)):
        dead = np.zeros(N, bool)
        dead[dead_ids] = True
        code = sparse.auxk_code(jnp.asarray(pre), jnp.asarray(dead), k_aux)
        n_use = min(k_aux, len(dead_ids))
        assert int(code.n_slots) == n_use  # the loops stop where the dead latents run out
        idx, vals = np.asarray(code.idx)[:, :n_use], np.asarray(code.vals)[:, :n_use]
        for row in range(B):
            cand = np.array(dead_ids)
            want = cand[np.argsort(-pre[row, cand])][:n_use]
            np.testing.assert_array_equal(idx[row], want)
            np.testing.assert_array_equal(vals[row], pre[row, want])
    none = sparse.auxk_code(jnp.asarray(pre), jnp.zeros(N, bool), 5)
    assert int(none.n_slots) == 0


def test_batchtopk_row_cap_against_numpy():
    """BatchTopK with a row cap: the batch's top B * k among each token's top row_cap."""
    rng = np.random.default_rng(8)
    pre = rng.normal(size=(B, N)).astype(np.float32)
    pre[0] += 5.0  # token 0 would take far more than row_cap latents without the cap
    k, cap = 3, 6
    code = sparse.batchtopk_code(jnp.asarray(pre), k=k, row_cap=cap)
    dense = np.asarray(sparse.densify(code.vals, code, B, N))
    cand = np.full_like(pre, -np.inf)
    for row in range(B):
        top = np.argsort(-pre[row])[:cap]
        cand[row, top] = pre[row, top]
    kept = np.argsort(-cand.ravel())[: B * k]
    want = np.zeros(B * N, np.float32)
    want[kept] = cand.ravel()[kept]
    np.testing.assert_array_equal(dense, want.reshape(B, N))
    assert np.count_nonzero(dense[0]) == cap


@pytest.mark.parametrize(
    "spelling,name",
    [
        ("bf16", "bfloat16"),
        (np.float32, "float32"),
        (jnp.bfloat16, "bfloat16"),
        (np.dtype("float16"), "float16"),
        ("float32", "float32"),
    ],
)
def test_dtype_spellings(spelling, name):
    config = sae.SAEConfig(d_in=D, d_sae=N, architecture="jumprelu", dtype=spelling)
    assert config.dtype == name
    assert config == sae.SAEConfig(d_in=D, d_sae=N, architecture="jumprelu", dtype=name)
    params = sae.init(jax.random.key(0), config)
    assert {str(v.dtype) for v in params.values()} == {name}


def test_dtype_error_names_the_field():
    with pytest.raises(sae.SAEConfigError, match="dtype"):
        sae.SAEConfig(d_in=D, d_sae=N, architecture="relu", dtype="int8")
