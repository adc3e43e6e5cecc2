"""One jitted training step for L stacked SAEs of one config, over an optional mesh.

The state (`TrainState`) holds L SAEs stacked on a leading axis, their Adam states, the
activation scales and the dead-latent counters. `train_step` runs one batch `x [L, B, D]` through
a `lax.scan` over the L SAEs (each step of which is already a [B, D] x [D, N] matmul, so a scan
loses nothing to a vmap, and keeps AuxK's `lax.cond` a real branch instead of a select).

Per SAE and batch: normalise x by its scale; loss and gradients (`sae.model`); for unit-norm
decoders, drop the gradient component along each decoder row; Adam (with the learning-rate
schedule and optional clipping); renormalise decoder rows; move BatchTopK's running threshold;
count tokens since each latent last fired. A non-finite loss is remembered as the first bad step
in the state, so the host can stop and name it without a sync every step.

Sharding: the mesh is the core's (`jaxlens.sharding.make_mesh`: axes `data`, `fsdp`, `tensor`)
and every SAE array has logical axis names (`LOGICAL_AXES`) that the core's rules table maps to
mesh axes in its `tensor` layout: the latent axis N (`latents`: `W_enc` columns, `W_dec` rows,
`b_enc`, the thresholds, the counters and the matching Adam moments) on `tensor`, the model
width D (`embed`) on `fsdp`, and the batch's tokens on `data` x `fsdp` like any model batch. XLA
partitions the rest, including the top-k over sharded latents.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import jaxlens
from sae import model
from sae.config import FitOptions, SAEConfig

_COUNTER_CAP = 2**30

LAYOUT = "tensor"  # the core's rules-table layout the SAE arrays are sharded by
LATENT_AXIS = "tensor"  # the mesh axis an SAE's latents (d_sae) are split over
jaxlens.sharding.register_rule("latents", LATENT_AXIS, layout=LAYOUT)
# Logical axis names of each stacked SAE array (leading axis: one SAE per layer).
LOGICAL_AXES = {
    "W_enc": ("layers", "embed", "latents"),
    "W_dec": ("layers", "latents", "embed"),
    "b_enc": ("layers", "latents"),
    "b_dec": ("layers", "embed"),
    "threshold": ("layers", "latents"),
    "log_threshold": ("layers", "latents"),
    "since_fired": ("layers", "latents"),
}
BATCH_AXES = jaxlens.sharding.BATCH_AXES  # the tokens of a batch [L, B, D], as any model batch


@flax.struct.dataclass
class TrainState:
    """Everything a training run needs to continue exactly (checkpointed by orbax).

    Attributes:
        params: SAE params stacked on a leading layer axis L (normalised activation space).
        opt_state: Adam state of the stacked params (count [L]).
        step: Int[] steps taken.
        scale: Float[L] factor that maps raw activations to unit mean squared norm.
        since_fired: Int[L, N] training tokens since each latent last fired.
        first_bad_step: Int[] first step whose loss was not finite, -1 while none.
    """

    params: model.Params
    opt_state: optax.OptState
    step: jax.Array
    scale: jax.Array
    since_fired: jax.Array
    first_bad_step: jax.Array


class StepStats(NamedTuple):
    """Per-SAE statistics of one step, each Float[L]."""

    loss: jax.Array
    mse: jax.Array
    fvu: jax.Array
    l0: jax.Array
    auxk: jax.Array
    sparsity: jax.Array
    dead_fraction: jax.Array


def learning_rate(lr: float, steps: int, options: FitOptions) -> Callable[[jax.Array], jax.Array]:
    """Linear warm-up, constant, then linear decay to 0 over the last `lr_decay_fraction`."""
    decay_steps = max(int(round(steps * options.lr_decay_fraction)), 0)

    def schedule(count: jax.Array) -> jax.Array:
        count = count.astype(jnp.float32)
        warm = jnp.minimum(1.0, (count + 1.0) / max(options.lr_warmup_steps, 1))
        decay = 1.0 if decay_steps == 0 else jnp.clip((steps - count) / decay_steps, 0.0, 1.0)
        return lr * warm * decay

    return schedule


def optimizer(lr: float, steps: int, options: FitOptions) -> optax.GradientTransformation:
    """Adam with the schedule of `learning_rate`, after optional global-norm clipping."""
    adam = optax.adam(learning_rate(lr, steps, options), b1=options.adam_b1, b2=options.adam_b2)
    if options.grad_clip > 0:
        return optax.chain(optax.clip_by_global_norm(options.grad_clip), adam)
    return adam


def state_shardings(state: TrainState, mesh: Mesh) -> TrainState:
    """A `NamedSharding` for every leaf of `state` from its logical axes (module docstring);
    leaves without a name (step, scale, Adam's count) are replicated."""

    def spec(path, leaf) -> NamedSharding:
        names = [getattr(p, "key", getattr(p, "name", None)) for p in path]
        named = next((n for n in reversed(names) if n in LOGICAL_AXES), None)
        shape = tuple(getattr(leaf, "shape", ()))
        if named is None or len(shape) != len(LOGICAL_AXES[named]):
            return NamedSharding(mesh, P())
        axes = LOGICAL_AXES[named]
        return NamedSharding(mesh, jaxlens.sharding.logical_to_spec(axes, shape, mesh, LAYOUT))

    return jax.tree_util.tree_map_with_path(spec, state)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Sharding of a stacked batch `[L, B, D]` (one slice per SAE): the tokens, axis 1, on
    `data` x `fsdp`. A model batch `[B, ...]` goes through `jaxlens.sharding.put_batch`."""
    return NamedSharding(mesh, P(None, BATCH_AXES, None))


def mesh_sizes(mesh: Mesh) -> tuple[int, int]:
    """(devices the tokens of a batch are split over, devices the latents are split over)."""
    tokens = 1
    for axis in BATCH_AXES:
        tokens *= mesh.shape[axis]
    return tokens, mesh.shape[LATENT_AXIS]


def init_state(
    params: model.Params, scale: jax.Array, tx: optax.GradientTransformation
) -> TrainState:
    """A fresh state around stacked params `[L, ...]` and scales `[L]`."""
    n_layers, n_latents = params["b_enc"].shape
    return TrainState(
        params=params,
        opt_state=jax.vmap(tx.init)(params),
        step=jnp.zeros((), jnp.int32),
        scale=scale.astype(jnp.float32),
        since_fired=jnp.zeros((n_layers, n_latents), jnp.int32),
        first_bad_step=jnp.full((), -1, jnp.int32),
    )


def _project_out_along_rows(grad: jax.Array, w: jax.Array) -> jax.Array:
    """Remove from each decoder row's gradient its component along the (unit) row."""
    return grad - jnp.sum(grad * w, axis=-1, keepdims=True) * w


def _unit_rows(w: jax.Array) -> jax.Array:
    return w / jnp.maximum(jnp.linalg.norm(w, axis=-1, keepdims=True), 1e-12)


def _layer_update(carry, layer, *, config, tx, options, step):
    """Update one SAE of the stack on its batch (the body of the scan over layers)."""
    del carry
    params, opt_state, since_fired, scale, x = layer
    x = (x * scale).astype(params["W_enc"].dtype)
    dead = since_fired >= config.dead_tokens_threshold
    sparsity_scale = jnp.minimum(1.0, (step + 1.0) / max(options.sparsity_warmup_steps, 1))

    def loss_fn(p):
        parts = model.loss_parts(p, x, dead, config=config)
        return model.total_loss(parts, sparsity_scale, config), parts

    (loss, parts), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    if config.unit_norm_decoder:
        grads["W_dec"] = _project_out_along_rows(grads["W_dec"], params["W_dec"])
    if config.architecture == "batchtopk":
        grads["threshold"] = jnp.zeros_like(grads["threshold"])  # moved by its running mean
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    if config.unit_norm_decoder:
        params["W_dec"] = _unit_rows(params["W_dec"])
    if config.architecture == "batchtopk":
        m = config.batchtopk_threshold_momentum
        old = params["threshold"]
        new = jnp.where(step == 0, parts.batch_threshold, m * old + (1 - m) * parts.batch_threshold)
        params["threshold"] = jnp.broadcast_to(new, old.shape).astype(old.dtype)
    batch = x.shape[0]
    since_fired = jnp.where(parts.fired, 0, jnp.minimum(since_fired + batch, _COUNTER_CAP))
    variance = jnp.sum(jnp.var(x, axis=0))
    stats = StepStats(
        loss=loss,
        mse=parts.mse,
        fvu=parts.mse / jnp.maximum(variance, 1e-12),
        l0=parts.l0,
        auxk=parts.auxk,
        sparsity=parts.sparsity,
        dead_fraction=jnp.mean(since_fired >= config.dead_tokens_threshold),
    )
    return None, (params, opt_state, since_fired, stats)


def train_step(
    state: TrainState,
    x: jax.Array,
    *,
    config: SAEConfig,
    tx: optax.GradientTransformation,
    options: FitOptions,
) -> tuple[TrainState, StepStats]:
    """One optimisation step of every SAE in the stack on its batch `x [L, B, D]`."""
    body = functools.partial(_layer_update, config=config, tx=tx, options=options, step=state.step)
    layers = (state.params, state.opt_state, state.since_fired, state.scale[:, None, None], x)
    if x.shape[0] == 1:  # one SAE: no loop, so no copies of the weights in and out of one
        _, out = body(None, jax.tree.map(lambda a: a[0], layers))
        params, opt_state, since_fired, stats = jax.tree.map(lambda a: a[None], out)
    else:
        _, (params, opt_state, since_fired, stats) = jax.lax.scan(body, None, layers)
    finite = jnp.all(jnp.isfinite(stats.loss))
    bad = jnp.where((state.first_bad_step < 0) & ~finite, state.step, state.first_bad_step)
    new_state = state.replace(
        params=params,
        opt_state=opt_state,
        step=state.step + 1,
        since_fired=since_fired,
        first_bad_step=bad,
    )
    return new_state, stats


def jit_train_step(config, tx, options, mesh: Mesh | None, state: TrainState):
    """`train_step` jitted with the config static and the state donated (and sharded)."""
    fn = functools.partial(train_step, config=config, tx=tx, options=options)
    if mesh is None:
        return jax.jit(fn, donate_argnums=0)
    shardings = state_shardings(state, mesh)
    return jax.jit(
        fn,
        donate_argnums=0,
        in_shardings=(shardings, batch_sharding(mesh)),
        out_shardings=(shardings, NamedSharding(mesh, P())),
    )
