"""Choosing the next token: greedy, temperature, top-k and top-p (nucleus), in that order.

`Sampling` is a frozen dataclass, static under `jit` (a new setting compiles once); the
filters work on fp32 last-position logits `[B, V]` and never retrace per step.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

Array = jax.Array


class SamplingError(ValueError):
    """A sampling setting outside its allowed range."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Sampling:
    """How the next token is chosen (static under `jit`: a new setting compiles once).

    Attributes:
      temperature: divides the logits; `0.0` is greedy (argmax).
      top_k: keep only the `top_k` most likely tokens (`None`: no limit).
      top_p: keep the smallest set of most likely tokens whose probability reaches `top_p`
        (nucleus sampling; `None`: no limit). Applied after `top_k`, as in HF.
    """

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None

    def __post_init__(self):
        if not isinstance(self.temperature, (int, float)) or self.temperature < 0:
            raise SamplingError(f"Sampling.temperature={self.temperature!r}: expected >= 0")
        if self.top_k is not None and (not isinstance(self.top_k, int) or self.top_k < 1):
            raise SamplingError(f"Sampling.top_k={self.top_k!r}: expected None or an int >= 1")
        if self.top_p is not None and not (0.0 < self.top_p <= 1.0):
            raise SamplingError(f"Sampling.top_p={self.top_p!r}: expected None or 0 < top_p <= 1")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


def filter_logits(logits: Array, sampling: Sampling) -> Array:
    """Temperature, then top-k, then top-p over `logits [B, V]` fp32; dropped tokens -> -inf."""
    logits = logits / sampling.temperature
    if sampling.top_k is not None and sampling.top_k < logits.shape[-1]:
        kth = jax.lax.top_k(logits, sampling.top_k)[0][:, -1:]  # [B, 1]
        logits = jnp.where(logits < kth, -jnp.inf, logits)
    if sampling.top_p is not None and sampling.top_p < 1.0:
        ordered = jnp.sort(logits, axis=-1)[:, ::-1]  # [B, V] descending
        probs = jax.nn.softmax(ordered, axis=-1)
        before = jnp.cumsum(probs, axis=-1) - probs  # mass of strictly more likely tokens
        keep = before < sampling.top_p  # the first token is always kept
        cutoff = jnp.min(jnp.where(keep, ordered, jnp.inf), axis=-1, keepdims=True)
        logits = jnp.where(logits < cutoff, -jnp.inf, logits)
    return logits


def sample_token(logits: Array, key: Array, sampling: Sampling) -> tuple[Array, Array]:
    """`(token [B] int32, logprob [B])` from last-position `logits [B, V]` (fp32)."""
    if sampling.greedy:
        token = jnp.argmax(logits, axis=-1)
    else:
        token = jax.random.categorical(key, filter_logits(logits, sampling), axis=-1)
    logprob = jnp.take_along_axis(jax.nn.log_softmax(logits, axis=-1), token[:, None], axis=-1)
    return token.astype(jnp.int32), logprob[:, 0]
