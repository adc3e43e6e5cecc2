"""`fit`: train one SAE, or one per layer from a shared stream, resumably.

`fit(activations, config, *, key, steps, batch_size, lr, mesh)` accepts

- an array `[N, D]` (host or device): batches are drawn without replacement, epoch by epoch,
  in an order fixed by `key`, so step s always sees the same tokens;
- a `sae.activations` source (anything with `iter_batches(batch_size, start_step)`), yielding
  `[B, D]` for one SAE or `[L, B, D]` for L SAEs (e.g. several layers of one model forward);
- any iterator of such batches (it cannot rewind, so a resumed run continues from wherever the
  iterator is).

It returns the trained params in the raw activation space (the normalisation scale folded back
into the weights), a dict for `[B, D]` inputs and a list of L dicts for `[L, B, D]` inputs (for a
`ModelActivations` source, entry i is the SAE of `source.layers[i]`; `layers="all"` gives one
SAE per model layer, every layer captured in the same forward and trained in the same step).

Start: the first batches (`options.init_sample_size` tokens) give each SAE its scale to unit mean
squared norm and its `b_dec` (geometric median by Weiszfeld's iterations, or the mean). The loop
then calls the jitted `sae.step.train_step`; every `log_every` steps it reads the statistics back
(and stops with `NonFiniteLossError` naming the step if a loss went NaN/inf). With
`checkpoint_dir`, orbax saves the whole `TrainState` every `checkpoint_every` steps and at the
end; calling `fit` again with the same arguments restores the latest state and continues, which
for an array or a resumable source gives exactly the params of an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from sae import model, step
from sae.activations import ArraySource
from sae.config import FitOptions, SAEConfig


class NonFiniteLossError(FloatingPointError, ValueError):
    """Training produced a NaN or infinite loss."""


class FitInputError(ValueError):
    """An argument of `fit` or a batch it was given is not what `fit` expects."""


def geometric_median(points: jax.Array, iters: int = 20, eps: float = 1e-6) -> jax.Array:
    """Weiszfeld's iterations for the geometric median of `points [S, D]` (from the mean)."""

    def body(_, median):
        dist = jnp.linalg.norm(points - median, axis=-1)
        w = 1.0 / jnp.maximum(dist, eps)
        return jnp.sum(w[:, None] * points, axis=0) / jnp.sum(w)

    return jax.lax.fori_loop(0, iters, body, jnp.mean(points, axis=0))


def fold_scale(params: model.Params, scale: float | jax.Array) -> model.Params:
    """Params that act on raw x from params trained on `scale * x` (see module docstring)."""
    out = dict(params)
    out["W_enc"] = (params["W_enc"] * scale).astype(params["W_enc"].dtype)
    out["W_dec"] = (params["W_dec"] / scale).astype(params["W_dec"].dtype)
    out["b_dec"] = (params["b_dec"] / scale).astype(params["b_dec"].dtype)
    return out


def _as_layers(batch: Any, config: SAEConfig, where: str) -> np.ndarray:
    arr = np.asarray(batch)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[-1] != config.d_in:
        raise FitInputError(
            f"{where} must have shape [B, d_in={config.d_in}] or [L, B, d_in]; got {arr.shape}"
        )
    if not np.issubdtype(arr.dtype, np.floating):
        raise FitInputError(f"{where} must hold floats; got dtype {arr.dtype}")
    return arr.astype(np.float32, copy=False)


def _batches(activations, batch_size: int, key: jax.Array, start: int) -> tuple[Iterator, bool]:
    """An iterator of batches from `start`, and whether the source was rewound exactly."""
    if hasattr(activations, "shape"):
        activations = ArraySource(np.asarray(activations), key=key)
    if hasattr(activations, "iter_batches"):
        return iter(activations.iter_batches(batch_size, start_step=start)), True
    if isinstance(activations, Iterable):
        return iter(activations), False
    raise FitInputError(
        "activations must be an array [N, d_in], a source with iter_batches(), or an iterator "
        f"of batches; got {type(activations).__name__}"
    )


def _initial_state(first: np.ndarray, config, options, key, tx) -> step.TrainState:
    n_layers = first.shape[0]
    sample = jnp.asarray(first)  # [L, S, D]
    mean_sq = jnp.mean(jnp.sum(jnp.square(sample), axis=-1), axis=-1)  # [L]
    if config.normalize_activations:
        scale = 1.0 / jnp.sqrt(jnp.maximum(mean_sq, 1e-12))
    else:
        scale = jnp.ones((n_layers,), jnp.float32)
    keys = jnp.stack([jax.random.fold_in(key, i) for i in range(n_layers)])
    params = jax.vmap(lambda k: model.init(k, config))(keys)  # layer i: same init at any L
    scaled = sample * scale[:, None, None]
    if config.b_dec_init == "geometric_median":
        b_dec = jax.vmap(lambda s: geometric_median(s, options.geometric_median_iters))(scaled)
    elif config.b_dec_init == "mean":
        b_dec = jnp.mean(scaled, axis=1)
    else:
        b_dec = jnp.zeros_like(params["b_dec"])
    params["b_dec"] = b_dec.astype(params["b_dec"].dtype)
    return step.init_state(params, scale, tx)


@functools.lru_cache(maxsize=32)
def _compiled_step(config: SAEConfig, lr: float, steps: int, options: FitOptions, mesh):
    """The optimizer and jitted step for these settings, reused across `fit` calls."""
    tx = step.optimizer(lr, steps, options)

    def abstract_state():
        params = jax.vmap(lambda k: model.init(k, config))(jax.random.split(jax.random.key(0), 1))
        return step.init_state(params, jnp.ones((1,)), tx)

    return tx, step.jit_train_step(config, tx, options, mesh, jax.eval_shape(abstract_state))


def _checkpointer(directory: str | os.PathLike, every: int):
    import orbax.checkpoint as ocp

    options = ocp.CheckpointManagerOptions(
        save_interval_steps=max(every, 1), max_to_keep=2, create=True
    )
    return ocp, ocp.CheckpointManager(os.path.abspath(directory), options=options)


def resumed_step(checkpoint_dir: str | os.PathLike) -> int:
    """The step a `fit` with this `checkpoint_dir` resumes from (0 when it holds no checkpoint),
    e.g. to start a progress bar there."""
    if not os.path.isdir(checkpoint_dir):
        return 0
    _, manager = _checkpointer(checkpoint_dir, 1)
    latest = manager.latest_step()
    manager.close()
    return 0 if latest is None else int(latest)


def _host_stats(stats: list[step.StepStats]) -> dict[str, list[float]]:
    stacked = jax.device_get(stats)
    return {
        name: np.mean([getattr(s, name) for s in stacked], axis=0).tolist()
        for name in step.StepStats._fields
    }


def _check_args(config, steps: int, batch_size: int, lr: float, mesh: Mesh | None) -> None:
    """Raise `FitInputError` naming the first argument of `fit` that is out of range."""
    if not isinstance(config, SAEConfig):
        raise FitInputError(f"config must be an SAEConfig; got {type(config).__name__}")
    for name, value in (("steps", steps), ("batch_size", batch_size)):
        if not isinstance(value, int) or value <= 0:
            raise FitInputError(f"{name} must be a positive int; got {value!r}")
    if not lr > 0:
        raise FitInputError(f"lr must be > 0; got {lr!r}")
    if mesh is not None:
        missing = {"data", "fsdp", "tensor"} - set(mesh.axis_names)
        if missing:
            raise FitInputError(
                "mesh must be a jaxlens mesh (jaxlens.sharding.make_mesh: axes 'data', 'fsdp', "
                f"'tensor'); missing {sorted(missing)}"
            )
        tokens, latents = step.mesh_sizes(mesh)
        if batch_size % tokens:
            raise FitInputError(
                f"batch_size={batch_size} must be a multiple of the mesh's data * fsdp size "
                f"{tokens}"
            )
        if config.d_sae % latents:
            raise FitInputError(
                f"d_sae={config.d_sae} must be a multiple of the mesh's tensor size {latents}"
            )


def fit(
    activations: Any,
    config: SAEConfig,
    *,
    key: jax.Array,
    steps: int,
    batch_size: int,
    lr: float = 4e-4,
    mesh: Mesh | None = None,
    options: FitOptions | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    callback: Callable[[int, dict[str, list[float]]], None] | None = None,
) -> model.Params | list[model.Params]:
    """Train SAE(s) on `activations`; see the module docstring for inputs, outputs and resume.

    Args:
        activations: array `[N, d_in]`, a source with `iter_batches`, or an iterator of
            `[B, d_in]` / `[L, B, d_in]` batches.
        config: the SAE's config (the same for every layer).
        key: PRNG key for the init and the data order.
        steps: total optimisation steps (the same on a resumed call).
        batch_size: tokens per step and SAE (a multiple of the mesh's `data` size).
        lr: peak Adam learning rate.
        mesh: optional `jaxlens.sharding.make_mesh` mesh: tokens on `data` x `fsdp`, latents
            on `tensor` (see `sae.step`).
        options: schedule, optimiser and checkpoint cadence (`FitOptions`).
        checkpoint_dir: orbax directory; an existing checkpoint there is resumed.
        callback: called as `callback(step, stats)` every `options.log_every` steps and at the
            end, `stats` mapping each `StepStats` field to per-SAE means since the last call.

    Returns:
        Params in the raw activation space: a dict, or a list of L dicts for `[L, B, D]` input.
    """
    options = FitOptions() if options is None else options
    _check_args(config, steps, batch_size, lr, mesh)
    init_key, data_key = jax.random.split(key)
    data_key = jax.random.fold_in(data_key, options.seed_offset)
    tx, train = _compiled_step(config, float(lr), steps, options, mesh)
    ocp, manager, start = _open_checkpoints(checkpoint_dir, options.checkpoint_every)
    first, init_iter, single = _init_sample(activations, config, options, batch_size, data_key)
    state = _initial_state(np.concatenate(first, axis=1), config, options, init_key, tx)
    if mesh is not None:
        state = jax.device_put(state, step.state_shardings(state, mesh))
    if start > 0:
        state = manager.restore(start, args=ocp.args.StandardRestore(_abstract(ocp, state)))
    batches = _batches_from(activations, start, first, init_iter, batch_size, data_key)
    run = _Run(
        train=train,
        mesh=mesh,
        steps=steps,
        batch_size=batch_size,
        config=config,
        lr=lr,
        options=options,
        manager=manager,
        ocp=ocp,
        callback=callback,
    )
    return _raw_params(_loop_to_end(run, state, batches, start), single)


def _open_checkpoints(checkpoint_dir: str | os.PathLike | None, every: int):
    """`(orbax module, manager, step to resume from)`; `(None, None, 0)` without a directory."""
    if checkpoint_dir is None:
        return None, None, 0
    ocp, manager = _checkpointer(checkpoint_dir, every)
    latest = manager.latest_step()
    return ocp, manager, 0 if latest is None else int(latest)


def _init_sample(activations, config, options, batch_size: int, data_key):
    """The first batches of the stream (from step 0, before any rewind) that set the scales and
    `b_dec`, each `[L, B, D]`; the iterator they came from (a one-shot iterator continues
    there); and whether the batches are `[B, D]` (one SAE: `fit` returns a dict)."""
    n_init = max(1, -(-options.init_sample_size // batch_size))
    init_iter, _ = _batches(activations, batch_size, data_key, 0)
    raw = list(itertools.islice(init_iter, n_init))
    if not raw:
        raise FitInputError("activations yielded no batch")
    single = np.ndim(raw[0]) == 2
    return [_as_layers(b, config, "a batch") for b in raw], init_iter, single


def _batches_from(activations, start: int, first, init_iter, batch_size: int, data_key):
    """The batches of steps `start...`: an array or a source rewinds (replays) to `start`; a
    one-shot iterator goes on after the init sample, which step 0 reuses."""
    if start > 0:
        return _batches(activations, batch_size, data_key, start)[0]
    if hasattr(activations, "shape") or hasattr(activations, "iter_batches"):
        return _batches(activations, batch_size, data_key, 0)[0]
    return itertools.chain(first, init_iter)


def _abstract(ocp, state: step.TrainState):
    """Shapes, dtypes and shardings of `state`: what orbax restores a checkpoint into."""
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, state)


def _raw_params(state: step.TrainState, single: bool) -> model.Params | list[model.Params]:
    """The trained SAEs unstacked, their scale folded back (raw activation space)."""
    out = [
        fold_scale(jax.tree.map(lambda a, i=i: a[i], state.params), state.scale[i])
        for i in range(state.scale.shape[0])
    ]
    return out[0] if single else out


@dataclasses.dataclass(frozen=True)
class _Run:
    """What the training loop needs besides the state and the batches."""

    train: Callable
    mesh: Mesh | None
    steps: int
    batch_size: int
    config: SAEConfig
    lr: float
    options: FitOptions
    manager: Any
    ocp: Any
    callback: Callable | None


def _next_batch(run: _Run, batches: Iterator, s: int, n_layers: int) -> jax.Array:
    try:
        batch = _as_layers(next(batches), run.config, f"the batch for step {s}")
    except StopIteration:
        raise FitInputError(f"activations ran out of batches at step {s} of {run.steps}") from None
    if batch.shape[:2] != (n_layers, run.batch_size):
        raise FitInputError(
            f"the batch for step {s} has shape {batch.shape}; expected "
            f"[{n_layers}, {run.batch_size}, {run.config.d_in}]"
        )
    if run.mesh is None:
        return batch
    return jax.device_put(batch, step.batch_sharding(run.mesh))


def _loop_to_end(run: _Run, state: step.TrainState, batches: Iterator, start: int):
    """`_loop`, then the checkpoints closed, also when a step raised (so a stopped run still
    leaves its last checkpoint complete)."""
    try:
        return _loop(run, state, batches, start)
    finally:
        if run.manager is not None:
            run.manager.wait_until_finished()
            run.manager.close()


def _loop(run: _Run, state: step.TrainState, batches: Iterator, start: int) -> step.TrainState:
    """Steps `start..run.steps`: train, check for NaN, checkpoint and report on schedule."""
    pending: list[step.StepStats] = []
    every = run.options.checkpoint_every
    for s in range(start, run.steps):
        state, stats = run.train(state, _next_batch(run, batches, s, state.scale.shape[0]))
        pending.append(stats)
        done = s + 1
        log = done % run.options.log_every == 0 or done == run.steps
        if log and int(state.first_bad_step) >= 0:
            raise NonFiniteLossError(
                f"the training loss became NaN/inf at step {int(state.first_bad_step)} "
                f"(architecture {run.config.architecture!r}, lr={run.lr}); lower lr or check "
                "the activations"
            )
        if run.manager is not None and ((every and done % every == 0) or done == run.steps):
            run.manager.save(done, args=run.ocp.args.StandardSave(state), force=True)
        if log:
            if run.callback is not None:
                run.callback(done, _host_stats(pending))
            pending = []
    return state
