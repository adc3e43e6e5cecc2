"""SAE metrics against numpy on the same codes: L0, MSE, FVU, dead fraction, densities."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sae

D, N, T = 9, 23, 301  # T not a multiple of the chunk size: the last chunk is partial


@pytest.mark.parametrize("arch", sae.ARCHITECTURES)
def test_metrics_equal_numpy(arch):
    config = sae.SAEConfig(
        d_in=D, d_sae=N, architecture=arch, k=4 if arch in ("topk", "batchtopk") else None
    )
    rng = np.random.default_rng(0)
    params = sae.init(jax.random.key(0), config)
    params["b_enc"] = jnp.asarray(0.2 * rng.normal(size=N), jnp.float32)
    params["b_enc"] = params["b_enc"].at[:3].set(-1e3)  # latents 0..2 never fire
    params["b_dec"] = jnp.asarray(rng.normal(size=D), jnp.float32)
    x = (rng.normal(size=(T, D)) * rng.uniform(0.5, 2.0, size=D) + 1.5).astype(np.float32)

    codes = np.asarray(sae.encode(params, x, config=config), np.float64)  # the same codes
    x64 = x.astype(np.float64)
    x_hat = codes @ np.asarray(params["W_dec"], np.float64) + np.asarray(params["b_dec"])
    sq_err = np.sum((x_hat - x64) ** 2, axis=1)
    total_var = np.sum((x64 - x64.mean(axis=0)) ** 2)
    active = codes != 0
    density = active.mean(axis=0)

    m = sae.metrics(params, x, config=config, chunk_size=64)
    np.testing.assert_allclose(m.l0, active.sum(axis=1).mean(), rtol=1e-6)
    np.testing.assert_allclose(m.mse, sq_err.mean(), rtol=1e-4)
    np.testing.assert_allclose(m.fvu, sq_err.sum() / total_var, rtol=1e-4)
    np.testing.assert_allclose(m.explained_variance, 1 - sq_err.sum() / total_var, rtol=1e-4)
    np.testing.assert_allclose(m.density, density, rtol=1e-6)
    assert m.dead_fraction == pytest.approx(np.mean(density == 0))
    assert m.dead_fraction >= 3 / N

    counts, edges, n_dead = sae.density_histogram(m.density, bins=10, low=-4.0)
    live = density[density > 0]
    want, _ = np.histogram(np.log10(live), bins=10, range=(-4.0, 0.0))
    np.testing.assert_array_equal(counts, want)
    assert n_dead == np.sum(density == 0)
