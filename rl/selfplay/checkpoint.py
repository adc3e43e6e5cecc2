"""Resumable training state through orbax: params, optimizer state, RNG key, step, baselines.

A checkpoint is one orbax step directory under `<run>/checkpoints/` with two items: `state`
(the arrays: fp32 params, Adam state, the PRNG key data; `StandardSave`, sharded arrays written
in place) and `meta` (JSON: step and the RAE baselines as `[game, role, value]` triples, which
are not arrays). Restoring into the abstract shapes (and shardings) of a freshly initialised
state gives back the same pytree, so a resumed run continues the same RNG stream with the same
baselines and optimizer moments: it equals the uninterrupted run step for step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp


def manager(directory: str | Path, *, keep: int = 2) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
    return ocp.CheckpointManager(Path(directory).absolute(), options=options)


def save(mgr: ocp.CheckpointManager, step: int, state: Any, baselines: dict) -> None:
    """Write step `step` (blocking until it is on disk, so a SIGTERM exit keeps it)."""
    meta = {
        "step": int(step),
        "baselines": [[g, int(r), float(v)] for (g, r), v in sorted(baselines.items(), key=str)],
    }
    mgr.save(
        int(step),
        args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
        force=True,
    )
    mgr.wait_until_finished()


def latest(mgr: ocp.CheckpointManager) -> int | None:
    return mgr.latest_step()


def restore(mgr: ocp.CheckpointManager, like: Any, step: int | None = None):
    """`(state, baselines, step)` of the latest (or given) checkpoint, shaped like `like`."""
    step = mgr.latest_step() if step is None else step
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    out = mgr.restore(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
        ),
    )
    baselines = {(g, int(r)): float(v) for g, r, v in out["meta"]["baselines"]}
    return out["state"], baselines, int(out["meta"]["step"])
