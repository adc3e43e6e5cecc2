"""Patching sweeps equal the loop of single patches they replace (residual layer x position,
heads' z layer x head); attribution patching equals central finite differences of the same
patches taken along the clean - corrupted direction."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlens import Capture, HookSpecError, ModelConfig, forward, head_patch, init_params, patch
from jaxlens.heads import offset
from jaxlens.patching import (
    attribution_patch,
    forward_bytes,
    patch_sweep,
    path_patch,
    sweep_chunk,
)


@pytest.fixture(scope="module")
def setup():
    config = ModelConfig.tiny()  # 3 layers, H=4 over K=2
    params = init_params(jax.random.key(1), config)
    rng = np.random.default_rng(4)
    clean = rng.integers(3, 101, (2, 6)).astype(np.int32)
    corrupted = clean.copy()
    corrupted[:, 1] = rng.integers(3, 101, 2)  # one token differs
    return config, params, clean, corrupted


def metric(logits):
    """Logit difference of tokens 5 and 7 at the last position, mean over rows."""
    return jnp.mean(logits[:, -1, 5] - logits[:, -1, 7])


def _run(setup, edit):
    config, params, _, corrupted = setup
    return float(metric(forward(params, corrupted, config=config, interventions=edit).logits))


def test_resid_sweep_equals_loop(setup):
    config, params, clean, corrupted = setup
    got = np.asarray(patch_sweep(params, clean, corrupted, metric, config=config, chunk=4))
    assert got.shape == (3, 6)
    acts = forward(params, clean, config=config, capture=Capture(("resid_pre",))).captures
    want = np.zeros((3, 6))
    for layer in range(3):
        for pos in range(6):
            where = np.zeros(clean.shape, bool)
            where[:, pos] = True
            want[layer, pos] = _run(
                setup, patch("resid_pre", layer, acts["resid_pre"][layer], mask=where)
            )
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert np.abs(want[0, 1] - _run(setup, None)) > 1e-4  # the differing token matters


def test_head_sweep_equals_loop(setup):
    config, params, clean, corrupted = setup
    got = np.asarray(
        patch_sweep(
            params,
            clean,
            corrupted,
            metric,
            config=config,
            site="z",
            over=("layer", "head"),
            logits_last=1,  # the metric reads the last position only
        )
    )
    assert got.shape == (3, 4)
    z = forward(params, clean, config=config, capture=Capture(("z",))).captures["z"]
    want = np.array(
        [[_run(setup, head_patch("z", i, h, z[i][:, :, h])) for h in range(4)] for i in range(3)]
    )
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert np.ptp(want) > 1e-5


def test_attribution_equals_finite_differences(setup):
    site, over = "z", ("layer", "pos", "head")  # per head: the gradient through head sites
    config, params, clean, corrupted = setup
    attr = np.asarray(
        attribution_patch(params, clean, corrupted, metric, config=config, site=site, over=over)
    )
    cap = Capture((site,))
    diff = np.asarray(
        forward(params, clean, config=config, capture=cap).captures[site]
    ) - np.asarray(
        forward(params, corrupted, config=config, capture=cap).captures[site]
    )  # [L, B, T, (H,) X]
    eps = 1e-2
    points = [(0, 1, 2), (1, 5, 0), (2, 3, 3), (0, 5, 1)]
    for point in points:
        d = np.zeros_like(diff)
        index = (point[0], slice(None), point[1]) + point[2:]
        d[index] = diff[index]
        up, down = (_run(setup, offset(site, (0, 1, 2), s * eps * d)) for s in (1, -1))
        np.testing.assert_allclose(attr[point], (up - down) / (2 * eps), rtol=2e-2, atol=1e-6)
    assert np.abs(attr).max() > 1e-4


def test_path_patch_equals_shifting_the_receivers_residual(setup):
    """With every later output frozen, the receiver reads its corrupted residual plus the
    sender's clean - corrupted result: the same input an `offset` there gives it."""
    config, params, clean, corrupted = setup
    sender, receiver = (0, 1), (2, 3)
    got = float(
        path_patch(
            params, clean, corrupted, metric, config=config, sender=sender,
            receivers=(receiver,), receiver_sites=("q", "v"),
        )
    )  # fmt: skip
    result = Capture(("result",))
    delta = (
        forward(params, clean, config=config, capture=result).captures["result"][0][:, :, 1]
        - forward(params, corrupted, config=config, capture=result).captures["result"][0][:, :, 1]
    )  # [B, T, D]
    shifted = forward(
        params, corrupted, config=config, capture=Capture(("q", "v")),
        interventions=offset("resid_pre", 2, delta[None]),
    ).captures  # fmt: skip
    want = _run(
        setup,
        head_patch("q", 2, 3, shifted["q"][2][:, :, 3])
        + head_patch("v", 2, 3, shifted["v"][2][:, :, 3]),
    )
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert abs(want - _run(setup, None)) > 1e-5
    with pytest.raises(HookSpecError, match="layers after 2"):
        path_patch(
            params, clean, corrupted, metric, config=config, sender=(2, 0), receivers=[[1, 0]]
        )
    with pytest.raises(HookSpecError, match="3 layers of 4 heads"):
        path_patch(
            params, clean, corrupted, metric, config=config, sender=(0, 4), receivers=[(1, 0)]
        )


def test_sweep_errors_and_chunks(setup):
    config, params, clean, corrupted = setup
    one = forward_bytes(config, 2, 6)
    assert one > 2 * 6 * 101 * 4  # at least the fp32 logits
    assert forward_bytes(config, 2, 12) > 2 * one  # attention scores grow with T^2
    assert sweep_chunk(config, 2, 6, 5 * one, 18) == 5
    assert sweep_chunk(config, 2, 6, 10, 18) == 1 and sweep_chunk(config, 2, 6, 2**40, 18) == 18
    with pytest.raises(HookSpecError, match="not a head site"):
        patch_sweep(params, clean, corrupted, metric, config=config, over=("layer", "head"))
    with pytest.raises(HookSpecError, match="in the order"):
        patch_sweep(params, clean, corrupted, metric, config=config, over=("pos", "layer"))
    with pytest.raises(HookSpecError, match="expected one"):
        attribution_patch(params, clean, corrupted[:, 1:], metric, config=config, over=["layer"])
