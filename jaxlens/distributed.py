"""Multi-host start-up: `jax.distributed.initialize()` when this is one of several processes.

Nothing home-made: this only decides *whether* to call JAX's own initializer. It does when the
caller passes a coordinator, when `JAX_COORDINATOR_ADDRESS` is set (with `JAX_NUM_PROCESSES`
and `JAX_PROCESS_ID`), or when a launcher JAX can read reports more than one task (Slurm,
Open MPI, Cloud TPU pods); then JAX fills in whatever was not given. A single process returns
False and touches nothing. On CPU, cross-process collectives need `gloo`, which must be chosen
before the backend starts; `maybe_initialize` sets it, so call it first thing.
"""

from __future__ import annotations

import os

import jax

_LAUNCHER_SIZES = ("SLURM_STEP_NUM_TASKS", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE")


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r}: expected an int") from None


def launcher_processes() -> int:
    """How many processes a recognized launcher started (1 if none is recognized)."""
    for name in _LAUNCHER_SIZES:
        n = _env_int(name)
        if n is not None:
            return n
    hosts = os.environ.get("TPU_WORKER_HOSTNAMES", "")
    return max(1, len([h for h in hosts.split(",") if h]))


def maybe_initialize(
    *,
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    cpu_collectives: str | None = "gloo",
) -> bool:
    """Calls `jax.distributed.initialize` if several processes are configured.

    Args:
      coordinator_address: `host:port` of process 0 (else `JAX_COORDINATOR_ADDRESS`).
      num_processes, process_id: else `JAX_NUM_PROCESSES` / `JAX_PROCESS_ID`, else the launcher.
      cpu_collectives: `jax_cpu_collectives_implementation` to set first (None: leave it).

    Returns:
      True if JAX runs distributed (now or already), False for a single process.
    """
    if jax.distributed.is_initialized():
        return True
    address = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS")
    n = num_processes if num_processes is not None else _env_int("JAX_NUM_PROCESSES")
    rank = process_id if process_id is not None else _env_int("JAX_PROCESS_ID")
    if n == 1 or (address is None and n is None and launcher_processes() <= 1):
        return False
    if cpu_collectives is not None:
        jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
    jax.distributed.initialize(coordinator_address=address, num_processes=n, process_id=rank)
    return True
