"""One process of the multi-host test: `python _multihost_worker.py PID PORT CKPT WORKDIR`.

Joins a 2-process JAX cluster on loopback (4 simulated CPU devices each), loads the checkpoint
onto an `fsdp=8` mesh that spans both processes, runs one jitted forward, and writes its logits
and the bytes it read (plus the bytes its own devices' blocks hold) to WORKDIR.
"""

import json
import sys
from pathlib import Path

from jaxlens.distributed import maybe_initialize


def main(pid: int, port: int, ckpt: str, workdir: Path) -> None:
    assert maybe_initialize(
        coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=pid
    )
    import jax
    import numpy as np
    from jax.sharding import NamedSharding, PartitionSpec

    from jaxlens import load_hf
    from jaxlens.hf import safetensors as sio
    from jaxlens.model import forward
    from jaxlens.sharding import make_mesh, put_batch

    mesh = make_mesh(data=1, fsdp=8)
    sio.reset_bytes_read()
    config, params = load_hf(ckpt, mesh=mesh, layout="fsdp")
    read = sio.bytes_read()
    own = 0  # bytes of the distinct blocks this process's devices hold
    for x in jax.tree.leaves(params):
        blocks = {
            tuple(s.indices(n)[:2] for s, n in zip(i, x.shape, strict=True))
            for i in x.sharding.addressable_devices_indices_map(x.shape).values()
        }
        own += sum(int(np.prod([b - a for a, b in blk])) * x.dtype.itemsize for blk in blocks)
    batch = np.load(workdir / "batch.npz")
    run = jax.jit(
        lambda p, t, m: forward(p, t, config=config, attention_mask=m).logits,
        out_shardings=NamedSharding(mesh, PartitionSpec()),
    )
    logits = run(params, put_batch(batch["tokens"], mesh), put_batch(batch["mask"], mesh))
    np.save(workdir / f"logits{pid}.npy", np.asarray(logits.addressable_data(0)))
    (workdir / f"stats{pid}.json").write_text(
        json.dumps(
            dict(
                bytes_read=read,
                own_bytes=own,
                processes=jax.process_count(),
                local_devices=jax.local_device_count(),
                devices=jax.device_count(),
            )
        )
    )
    jax.distributed.shutdown()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], Path(sys.argv[4]))
