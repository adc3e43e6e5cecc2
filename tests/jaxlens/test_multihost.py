"""Two JAX processes x 4 simulated CPU devices on loopback, as a multi-host stand-in.

Each process (`_multihost_worker.py`) joins through `jaxlens.distributed.maybe_initialize`
(`jax.distributed.initialize` with gloo CPU collectives), loads the checkpoint onto an
`fsdp=8` mesh spanning both, reading only its own devices' slices, and computes the logits of
one jitted forward; both must match transformers.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from _hf_models import hf_logits, left_padded_batch, make_hf_model  # noqa: E402

WORKER = Path(__file__).with_name("_multihost_worker.py")
SIZES = dict(
    hidden_size=48,
    num_attention_heads=8,
    num_key_value_heads=2,
    head_dim=10,
    intermediate_size=67,
    vocab_size=101,
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.multiprocess
def test_two_processes_load_their_slices_and_match_hf(tmp_path):
    model = make_hf_model("llama", **SIZES)
    model.save_pretrained(tmp_path / "ckpt")
    tokens, mask = left_padded_batch(101, lengths=(10, 6, 3))
    np.savez(tmp_path / "batch.npz", tokens=tokens, mask=mask)
    want = hf_logits(model, tokens, mask)
    total = sum(p.numel() * 4 for p in model.state_dict().values())

    port = _free_port()
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
        "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).parents[2]), os.environ.get("PYTHONPATH", "")]
        ),
    }
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(i), str(port), str(tmp_path / "ckpt"), str(tmp_path)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=120)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for i, p in enumerate(procs):
        assert p.returncode == 0, f"process {i} failed:\n{logs[i][-3000:]}"

    real = mask.astype(bool)
    stats = [json.loads((tmp_path / f"stats{i}.json").read_text()) for i in range(2)]
    for i, s in enumerate(stats):
        assert (s["processes"], s["local_devices"], s["devices"]) == (2, 4, 8)
        got = np.load(tmp_path / f"logits{i}.npy")
        np.testing.assert_allclose(got[real], want[real], atol=1e-4, rtol=0)
        # Each process read exactly the blocks its devices hold: about half the model.
        assert s["bytes_read"] == s["own_bytes"]
        assert s["bytes_read"] < 0.6 * total
    assert sum(s["bytes_read"] for s in stats) >= total


_ENV = (
    "JAX_COORDINATOR_ADDRESS",
    "JAX_NUM_PROCESSES",
    "JAX_PROCESS_ID",
    "SLURM_NTASKS",
    "SLURM_STEP_NUM_TASKS",
    "OMPI_COMM_WORLD_SIZE",
    "TPU_WORKER_HOSTNAMES",
)


def test_maybe_initialize_decides_from_args_and_environment(monkeypatch):
    """One process: nothing happens. Several (env or launcher): JAX's initializer gets the args."""
    import jax

    from jaxlens.distributed import maybe_initialize

    calls = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: calls.append(kw))
    monkeypatch.setattr(jax.config, "update", lambda *a: calls.append(a))
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)
    assert maybe_initialize() is False
    monkeypatch.setenv("SLURM_NTASKS", "1")
    assert maybe_initialize() is False and calls == []
    monkeypatch.setenv("SLURM_NTASKS", "4")
    assert maybe_initialize() is True
    assert calls[-1] == dict(coordinator_address=None, num_processes=None, process_id=None)
    monkeypatch.delenv("SLURM_NTASKS")
    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "10.0.0.1:1234")
    monkeypatch.setenv("JAX_NUM_PROCESSES", "2")
    monkeypatch.setenv("JAX_PROCESS_ID", "1")
    assert maybe_initialize() is True
    assert calls[-2] == ("jax_cpu_collectives_implementation", "gloo")
    assert calls[-1] == dict(coordinator_address="10.0.0.1:1234", num_processes=2, process_id=1)
    monkeypatch.setenv("JAX_NUM_PROCESSES", "two")
    with pytest.raises(ValueError, match="JAX_NUM_PROCESSES"):
        maybe_initialize()
