"""Next-token log-probabilities and loss: the quantities training, metrics and RL share.

`target_logprobs(logits, tokens)` reads `log p(tokens[:, t] | tokens[:, :t])` off logits a
caller already has; `token_logprobs(params, tokens, *, config)` runs `model_apply` first;
`next_token_loss` is their mean negative over real targets. All are pure, un-jitted and
differentiable (call them under your own `jit`/`grad`). Padding: a target position counts when
both it and the position before it are real tokens; other positions hold 0 / are left out.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, Shaped

from jaxlens.config import ModelConfig
from jaxlens.model import model_apply
from jaxlens.params import Params


def _mask(tokens: Array, attention_mask: Array | None) -> Array:
    return jnp.ones(tokens.shape, bool) if attention_mask is None else attention_mask.astype(bool)


def target_logprobs(
    logits: Float[Array, "B T V"],
    tokens: Int[Array, "B T"],
    attention_mask: Shaped[Array, "B T"] | None = None,
) -> Float[Array, "B T-1"]:
    """`[B, T-1]` fp32: log-probability of `tokens[:, 1:]` under `logits [B, T, V]`.

    Positions whose target token is padding hold 0.
    """
    mask = _mask(tokens, attention_mask)
    logp = jax.nn.log_softmax(logits[:, :-1].astype(jnp.float32), axis=-1)
    picked = jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1)[..., 0]
    return jnp.where(mask[:, 1:], picked, 0.0)


def token_logprobs(
    params: Params,
    tokens: Int[Array, "B T"],
    *,
    config: ModelConfig,
    attention_mask: Shaped[Array, "B T"] | None = None,
    interventions: Any = None,
    last: int | None = None,
    segments: Int[Array, "B T"] | None = None,
) -> Float[Array, "B T-1"]:
    """`[B, T-1]`: log-probability of each token given the ones before it (fp32).

    Positions whose token is padding hold 0. `last` (static, 1..T-1): only the last `last`
    tokens are scored, `[B, last]`, equal to the full result's last columns; the vocabulary
    projection then runs on `last + 1` positions instead of T (a learner that scores the
    response of a left-padded prompt + response). `segments [B, T]`: document ids of packed
    rows (see `model_apply`).
    """
    if last is not None and not 0 < last < tokens.shape[1]:
        raise ValueError(f"token_logprobs: last={last!r}, expected 1..{tokens.shape[1] - 1}")
    window = None if last is None else last + 1
    logits = model_apply(
        params,
        tokens,
        config=config,
        attention_mask=attention_mask,
        interventions=interventions,
        logits_last=window,
        segments=segments,
    ).logits
    if window is None:
        return target_logprobs(logits, tokens, attention_mask)
    mask = None if attention_mask is None else attention_mask[:, -window:]
    return target_logprobs(logits, tokens[:, -window:], mask)


def next_token_loss(
    params: Params,
    tokens: Int[Array, "B T"],
    *,
    config: ModelConfig,
    attention_mask: Shaped[Array, "B T"] | None = None,
    interventions: Any = None,
) -> Float[Array, ""]:
    """Mean cross-entropy (nats/token) of next-token prediction over the real targets."""
    mask = _mask(tokens, attention_mask)
    logp = token_logprobs(
        params, tokens, config=config, attention_mask=mask, interventions=interventions
    )
    return mean_target_nll(logp, mask)


def mean_target_nll(
    logp: Float[Array, "B T-1"], attention_mask: Shaped[Array, "B T"]
) -> Float[Array, ""]:
    """Mean of `-logp [B, T-1]` over targets whose token and predecessor are both real."""
    mask = attention_mask.astype(bool)
    targets = mask[:, 1:] & mask[:, :-1]
    return -jnp.sum(jnp.where(targets, logp, 0.0)) / jnp.maximum(targets.sum(), 1)
