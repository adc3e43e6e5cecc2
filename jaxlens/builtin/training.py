"""A plain next-token trainer over `jaxlens.model_apply`.

The loss is `masked_loss`, the next-token cross-entropy (`jaxlens.token_logprobs`) averaged
with per-token weights. `fit_lm` is a small, complete Adam loop for the tiny models this
project builds offline (tests, examples, the quickstart) and for the built-in model; the step
is one jitted function and the loop a `lax.scan` over `log_every` steps."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlens.config import ModelConfig
from jaxlens.logprobs import token_logprobs
from jaxlens.params import Params, check_params

Array = jax.Array


__all__ = ["LMState", "TrainingError", "fit_lm", "masked_loss"]


class TrainingError(ValueError):
    """Bad training input, or a loss that became NaN/inf."""


class LMState(NamedTuple):
    params: Params
    opt_state: Any
    key: Array


@functools.partial(
    jax.jit, static_argnames=("config", "optimizer", "steps", "batch_size"), donate_argnums=0
)
def _train_chunk(
    state: LMState,
    data: Array,
    targets: Array,
    segments: Array | None,
    *,
    config: ModelConfig,
    optimizer: optax.GradientTransformation,
    steps: int,
    batch_size: int,
) -> tuple[LMState, Array]:
    def train_step(state: LMState, _) -> tuple[LMState, Array]:
        key, pick = jax.random.split(state.key)
        rows = jax.random.choice(pick, data.shape[0], (batch_size,), replace=False)
        loss, grads = jax.value_and_grad(masked_loss)(
            state.params,
            data[rows],
            targets[rows],
            config=config,
            segments=None if segments is None else segments[rows],
        )
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        return LMState(optax.apply_updates(state.params, updates), opt_state, key), loss

    return jax.lax.scan(train_step, state, None, length=steps)


def masked_loss(
    params: Params,
    tokens: Array,
    targets: Array,
    *,
    config: ModelConfig,
    segments: Array | None = None,
) -> Array:
    """Next-token cross-entropy averaged with the weights `targets [B, T]` (bool or float);
    `segments [B, T]`: document ids of packed rows (each document sees only itself)."""
    weight = targets[:, 1:].astype(jnp.float32)
    logp = token_logprobs(params, tokens, config=config, segments=segments)
    return -jnp.sum(logp * weight) / jnp.maximum(weight.sum(), 1.0)


def _check_tokens(data: np.ndarray, config: ModelConfig, batch_size: int) -> None:
    if data.ndim != 2 or not np.issubdtype(data.dtype, np.integer):
        raise TrainingError(
            f"tokens have shape {data.shape} and dtype {data.dtype}: expected "
            "integer windows [S, T]"
        )
    if data.shape[1] < 2 or not 0 < batch_size <= data.shape[0]:
        raise TrainingError(
            f"batch_size={batch_size} with tokens {data.shape}: expected "
            "T >= 2 and 0 < batch_size <= S"
        )
    if data.min() < 0 or data.max() >= config.vocab_size:
        raise TrainingError(
            f"token ids span [{data.min()}, {data.max()}]: expected ids below "
            f"vocab_size={config.vocab_size}"
        )


def _loss_weights(loss_mask: Any, shape: tuple[int, int]) -> Array:
    """`[S, T]` float32 loss weights: ones without a mask, else the checked mask."""
    if loss_mask is None:
        return jnp.ones(shape, jnp.float32)
    if np.shape(loss_mask) != shape:
        raise TrainingError(
            f"loss_mask has shape {np.shape(loss_mask)}: expected the tokens' shape {shape}"
        )
    weights = np.asarray(loss_mask, np.float32)
    if not np.all(np.isfinite(weights)) or weights.min() < 0:
        raise TrainingError("loss_mask: expected booleans or finite non-negative weights")
    return jnp.asarray(weights)


def _segment_ids(segments: Any, shape: tuple[int, int]) -> Array | None:
    """`[S, T]` int32 document ids (checked), or None."""
    if segments is None:
        return None
    segments = np.asarray(segments)
    if segments.shape != shape or not np.issubdtype(segments.dtype, np.integer):
        raise TrainingError(
            f"segments have shape {segments.shape} and dtype {segments.dtype}: expected "
            f"integer document ids of the tokens' shape {shape}"
        )
    if np.any(np.diff(segments, axis=1) < 0):
        raise TrainingError("segments: expected document ids non-decreasing along a window")
    return jnp.asarray(segments, jnp.int32)


def adam_schedule(lr: float, steps: int) -> optax.GradientTransformation:
    """Adam (no weight decay) with a linear warmup over the first tenth of the steps, then a
    cosine decay to 0."""
    warmup = max(steps // 10, 1)
    return optax.adamw(  # decay_steps > warmup, or optax refuses a 1-step run
        optax.warmup_cosine_decay_schedule(0.0, lr, warmup, max(steps, warmup + 1)),
        weight_decay=0.0,
    )


def fit_lm(
    params: Params,
    tokens: Any,
    *,
    config: ModelConfig,
    key: Array,
    steps: int,
    batch_size: int,
    lr: float = 3e-3,
    log_every: int = 50,
    callback: Callable[[int, float], None] | None = None,
    snapshot: Callable[[int, Params], None] | None = None,
    loss_mask: Any = None,
    segments: Any = None,
) -> Params:
    """Trains `params` on token windows `[S, T]` by next-token prediction (`adam_schedule`).

    `loss_mask [S, T]` (optional, bool or non-negative float weights) limits the loss to the
    tokens where it is true (or weights them), e.g. the replies of chat conversations;
    `segments [S, T]` (optional, ints non-decreasing along each window) marks the documents
    packed into a window: each is then read alone (attention stays inside it, positions
    restart at its start), as it will be read at inference;
    `callback(step, loss)` and `snapshot(step, params)` are called every `log_every` steps.
    Raises `TrainingError` on bad input or when the loss stops being finite (naming the step).
    """
    check_params(params, config)
    data = np.asarray(tokens)
    _check_tokens(data, config, batch_size)
    if steps <= 0 or log_every <= 0:
        raise TrainingError(f"steps={steps}, log_every={log_every}: expected positive ints")
    optimizer = adam_schedule(lr, steps)
    params = jax.tree.map(jnp.array, params)  # the chunk donates its input: keep the caller's
    state = LMState(params, optimizer.init(params), key)
    targets = _loss_weights(loss_mask, data.shape)
    segments = _segment_ids(segments, data.shape)
    data = jnp.asarray(data, jnp.int32)
    done = 0
    while done < steps:
        chunk = min(log_every, steps - done)
        state, losses = _train_chunk(
            state, data, targets, segments,
            config=config, optimizer=optimizer, steps=chunk, batch_size=batch_size,
        )  # fmt: skip
        done += chunk
        last = float(losses[-1])
        if not np.isfinite(last):
            raise TrainingError(f"the loss became {last} by step {done}: lower lr={lr}")
        if callback is not None:
            callback(done, last)
        if snapshot is not None:  # before the next chunk donates these buffers
            snapshot(done, state.params)
    return state.params
