"""Training: sharded == single device, resume == uninterrupted, layers, dead latents, errors."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxlens
import sae
from sae import model, step

D, N, B = 16, 38, 44  # d_sae divisible by the 2 model shards, batch by the 4 data shards


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    rng = np.random.default_rng(0)
    basis = rng.normal(size=(60, D))
    codes = rng.exponential(size=(2000, 60)) * (rng.random((2000, 60)) < 0.08)
    return (codes @ basis + 0.3).astype(np.float32)


def _config(arch: str, **kw) -> sae.SAEConfig:
    if arch in ("topk", "batchtopk"):
        kw.setdefault("k", 4)
        kw.setdefault("aux_k", 6)
        kw.setdefault("dead_tokens_threshold", 3 * B)  # AuxK switches on within the test
    return sae.SAEConfig(d_in=D, d_sae=N, architecture=arch, **kw)


OPTIONS = sae.FitOptions(lr_warmup_steps=2, sparsity_warmup_steps=3, log_every=2)


@pytest.mark.parametrize("arch", sae.ARCHITECTURES)
def test_sharded_matches_single_device(arch, data):
    if len(jax.devices()) < 8:
        pytest.skip(
            "needs 8 (simulated) devices: XLA_FLAGS=--xla_force_host_platform_device_count=8"
        )
    # batchtopk also over an fsdp axis: tokens on data x fsdp, the model width on fsdp
    sizes = dict(data=2, fsdp=2, tensor=2) if arch == "batchtopk" else dict(data=4, tensor=2)
    mesh = jaxlens.sharding.make_mesh(**sizes, devices=jax.devices()[:8])
    config = _config(arch)
    kw = dict(key=jax.random.key(1), steps=6, batch_size=B, lr=3e-3, options=OPTIONS)
    single = sae.fit(data, config, **kw)
    sharded = sae.fit(data, config, mesh=mesh, **kw)
    embed = "fsdp" if arch == "batchtopk" else None
    assert sharded["W_enc"].sharding.spec == jax.sharding.PartitionSpec(embed, "tensor")
    for name in single:
        np.testing.assert_allclose(sharded[name], single[name], rtol=2e-4, atol=2e-5, err_msg=name)


CHILD = f"""
import sys, time
from pathlib import Path
import jax, numpy as np
import sae
data_path, ckpt, marker = sys.argv[1:4]
config = sae.SAEConfig(d_in={D}, d_sae={N}, architecture="batchtopk", k=4, aux_k=6,
                       dead_tokens_threshold={3 * B})
options = sae.FitOptions(log_every=1, checkpoint_every=3, sparsity_warmup_steps=4)

def stall(done, stats):  # after step 7: between the checkpoints of steps 6 and 9
    if done == 7:
        Path(marker).write_text("7")
        time.sleep(600)

sae.fit(np.load(data_path), config, key=jax.random.key(2), steps=9, batch_size={B}, lr=3e-3,
        options=options, checkpoint_dir=ckpt, callback=stall)
"""


def test_resume_after_sigkill_equals_uninterrupted(data, tmp_path):
    """A training process killed by SIGKILL between checkpoints resumes from the last saved
    step and ends with exactly the params of an uninterrupted run."""
    config = _config("batchtopk")  # the most state: AuxK counters, running threshold
    options = sae.FitOptions(log_every=1, checkpoint_every=3, sparsity_warmup_steps=4)
    kw = dict(key=jax.random.key(2), steps=9, batch_size=B, lr=3e-3, options=options)
    np.save(tmp_path / "data.npy", data)
    marker = tmp_path / "reached"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path / "data.npy"), str(tmp_path / "ckpt"), marker],
        cwd=Path(__file__).parents[2],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 240
        while not marker.exists():
            if child.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the training child did not reach step 7: {child.stderr}")
            time.sleep(0.1)
    finally:
        child.kill()  # SIGKILL: no exception handler, no finally block runs in the child
        child.wait()
    assert child.returncode == -signal.SIGKILL
    full = sae.fit(data, config, **kw)
    restored = sae.resumed_step(tmp_path / "ckpt")
    assert sae.resumed_step(tmp_path / "no_such_dir") == 0
    seen = []
    resumed = sae.fit(
        data, config, checkpoint_dir=tmp_path / "ckpt", callback=lambda d, s: seen.append(d), **kw
    )
    assert seen[0] in (4, 7), seen  # continued after the checkpoint of step 3 or 6, not from 0
    assert restored == seen[0] - 1  # what a progress bar is started at
    for name in full:
        np.testing.assert_array_equal(
            np.asarray(resumed[name]), np.asarray(full[name]), err_msg=name
        )


def test_layers_train_together_like_alone(data):
    config = _config("topk")
    other = np.random.default_rng(5).permutation(data)
    stacked = np.stack([data, other], axis=1)  # [N, L=2, D]
    kw = dict(key=jax.random.key(3), steps=5, batch_size=B, lr=3e-3, options=OPTIONS)
    both = sae.fit(stacked, config, **kw)
    alone = sae.fit(data, config, **kw)
    assert isinstance(both, list) and len(both) == 2
    for name in alone:
        np.testing.assert_allclose(both[0][name], alone[name], rtol=1e-5, atol=1e-6, err_msg=name)
    assert not np.allclose(both[1]["W_dec"], both[0]["W_dec"])


def test_dead_latents_are_counted():
    config = _config("relu", dead_tokens_threshold=2 * B)
    options = sae.FitOptions()
    tx = step.optimizer(1e-3, 10, options)
    params = jax.vmap(lambda k: model.init(k, config))(jax.random.split(jax.random.key(0), 1))
    params["b_enc"] = params["b_enc"].at[0, :3].set(-1e4)  # latents 0..2 can never fire
    state = step.init_state(params, jnp.ones((1,)), tx)
    train = step.jit_train_step(config, tx, options, None, state)
    x = jnp.asarray(np.random.default_rng(1).normal(size=(1, B, D)), jnp.float32)
    for _ in range(3):
        state, stats = train(state, x)
    since = np.asarray(state.since_fired[0])
    np.testing.assert_array_equal(since[:3], 3 * B)
    assert np.all(since[3:][since[3:] > 0] <= 3 * B)
    expected = np.mean(since >= 2 * B)
    assert expected >= 3 / N
    np.testing.assert_allclose(stats.dead_fraction[0], expected)


def test_nan_in_training_names_the_step(data):
    config = _config("relu")
    bad = data[:B].copy()
    bad[5, 3] = np.nan
    batches = itertools.chain(
        [data[:B], data[B : 2 * B], data[2 * B : 3 * B]], itertools.repeat(bad)
    )
    with pytest.raises(sae.NonFiniteLossError, match="step 3"):
        sae.fit(
            batches,
            config,
            key=jax.random.key(0),
            steps=8,
            batch_size=B,
            options=sae.FitOptions(log_every=1, init_sample_size=B),
        )


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(steps=0), "steps"),
        (dict(batch_size=-1), "batch_size"),
        (dict(lr=0.0), "lr"),
        (dict(batch_size=3000), "fewer than one batch"),
        (dict(batch_size=42, mesh="mesh"), "multiple of the mesh"),
    ],
)
def test_fit_argument_errors(kwargs, match, data):
    if kwargs.get("mesh") == "mesh":
        kwargs["mesh"] = jaxlens.sharding.make_mesh(data=4, tensor=2, devices=jax.devices()[:8])
    base = dict(key=jax.random.key(0), steps=2, batch_size=B)
    with pytest.raises(ValueError, match=match):
        sae.fit(data, _config("relu"), **{**base, **kwargs})


def test_fit_rejects_wrong_width(data):
    with pytest.raises(sae.FitInputError, match="d_in=17"):
        sae.fit(
            data,
            sae.SAEConfig(d_in=17, d_sae=N, architecture="relu"),
            key=jax.random.key(0),
            steps=2,
            batch_size=B,
        )


def test_fit_in_bfloat16(data):
    config = sae.SAEConfig(d_in=D, d_sae=N, architecture="jumprelu", dtype="bf16")
    out = sae.fit(data, config, key=jax.random.key(0), steps=3, batch_size=B, lr=1e-3)
    assert {str(v.dtype) for v in out.values()} == {"bfloat16"}
    assert all(np.all(np.isfinite(np.asarray(v, np.float32))) for v in out.values())
