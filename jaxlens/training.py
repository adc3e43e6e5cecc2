"""Token log-probabilities and a plain next-token trainer over `forward`.

`token_logprobs` is the quantity both language-model training and SPIRAL's policy gradient
need: `log p(tokens[:, t] | tokens[:, :t])` for every position after the first. `fit_lm` is a
small, complete Adam loop for the tiny models this project builds offline (tests, examples, the
quickstart); the step is one jitted function and the loop a `lax.scan` over `log_every` steps.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlens.config import ModelConfig
from jaxlens.model import Params, _forward, check_params

Array = jax.Array


class TrainingError(ValueError):
    """Bad training input, or a loss that became NaN/inf."""


def token_logprobs(
    params: Params,
    tokens: Array,
    *,
    config: ModelConfig,
    attention_mask: Array | None = None,
    interventions: Any = None,
) -> Array:
    """`[B, T-1]`: log-probability of each token given the ones before it (fp32).

    Positions whose token is padding hold 0.
    """
    mask = jnp.ones(tokens.shape, bool) if attention_mask is None else attention_mask.astype(bool)
    logits = _forward(params, tokens, mask, None, interventions, config=config).logits
    logp = jax.nn.log_softmax(logits[:, :-1], axis=-1)
    picked = jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1)[..., 0]
    return jnp.where(mask[:, 1:], picked, 0.0)


def next_token_loss(
    params: Params, tokens: Array, *, config: ModelConfig, attention_mask: Array | None = None
) -> Array:
    """Mean cross-entropy of next-token prediction over the real target tokens."""
    mask = jnp.ones(tokens.shape, bool) if attention_mask is None else attention_mask.astype(bool)
    logp = token_logprobs(params, tokens, config=config, attention_mask=mask)
    targets = mask[:, 1:] & mask[:, :-1]
    return -jnp.sum(jnp.where(targets, logp, 0.0)) / jnp.maximum(targets.sum(), 1)


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
    *,
    config: ModelConfig,
    optimizer: optax.GradientTransformation,
    steps: int,
    batch_size: int,
) -> tuple[LMState, Array]:
    def train_step(state: LMState, _) -> tuple[LMState, Array]:
        key, pick = jax.random.split(state.key)
        rows = jax.random.choice(pick, data.shape[0], (batch_size,), replace=False)
        loss, grads = jax.value_and_grad(next_token_loss)(state.params, data[rows], config=config)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        return LMState(optax.apply_updates(state.params, updates), opt_state, key), loss

    return jax.lax.scan(train_step, state, None, length=steps)


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
) -> Params:
    """Trains `params` on token windows `[S, T]` by next-token prediction (Adam, cosine decay).

    Raises `TrainingError` on bad input or when the loss stops being finite (naming the step).
    """
    check_params(params, config)
    data = np.asarray(tokens)
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
    if steps <= 0 or log_every <= 0:
        raise TrainingError(f"steps={steps}, log_every={log_every}: expected positive ints")
    optimizer = optax.adamw(
        optax.warmup_cosine_decay_schedule(0.0, lr, max(steps // 10, 1), steps), weight_decay=0.0
    )
    params = jax.tree.map(jnp.array, params)  # the chunk donates its input: keep the caller's
    state = LMState(params, optimizer.init(params), key)
    data = jnp.asarray(data, jnp.int32)
    done = 0
    while done < steps:
        chunk = min(log_every, steps - done)
        state, losses = _train_chunk(
            state, data, config=config, optimizer=optimizer, steps=chunk, batch_size=batch_size
        )
        done += chunk
        last = float(losses[-1])
        if not np.isfinite(last):
            raise TrainingError(f"the loss became {last} by step {done}: lower lr={lr}")
        if callback is not None:
            callback(done, last)
    return state.params
