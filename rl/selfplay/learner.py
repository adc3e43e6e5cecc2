"""The PPO-clipped policy-gradient learner on response tokens (SPIRAL's loss).

Per response token with log-probability `lp` under the current params, `old` under the sampling
policy and the sample's advantage `A`:

    ratio = exp(lp - old)
    loss_t = -min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A)      (+ kl_coef * k3_t)

aggregated in one of two ways (`PPOConfig.normalize`):

- "constant" (SPIRAL's Dr. GRPO aggregation, oat's `masked_sum` with `constant_normalizer =
  generate_max_length`): each sequence's token losses are summed and divided by
  `PPOConfig.constant` (4096), and these per-sequence losses are averaged over the sequences
  of the batch. Every token weighs the same whatever the reply lengths, and the loss does not
  grow with the batch size. Micro-batches of equal size averaged as gradient accumulation
  averages them give the same mean; here each micro-batch's sum is divided by `constant` times
  the batch's number of sequences (padding rows are not sequences), which is that mean exactly.
- "token_mean": the batch's token sum divided by its number of response tokens.
- "batch_constant": the batch's token sum divided by `constant` (not averaged over sequences:
  N times SPIRAL's loss for N sequences); the normalisation the built-in model's recipe was
  chosen with, kept so that its recorded runs can be repeated.
 `k3_t = exp(ref - lp) - (ref - lp) - 1` is the optional KL to the initial
policy (`kl_coef`, 0 by default as in SPIRAL). No critic, no entropy bonus.

A batch is `[M, m, W]`: M micro-batches of m sequences (prompt + response, left padded to W);
gradients are accumulated over the micro-batches by a `lax.scan` and one optax update (Adam with
global-norm clipping) follows, `epochs` times per batch. Log-probabilities are recomputed by
`jaxlens.token_logprobs` (the core's public model function), on the response window only
(`Batch.response_width`: the vocabulary projection and its softmax skip the prompt). With
`param_dtype="bfloat16"` the trained params (and Adam's state) stay fp32 and the forward runs on
a bf16 copy; generation uses the same copy (`compute_params`). Under a mesh the params are
sharded (`jaxlens.sharding`, fsdp layout) and the batch split over ("data", "fsdp"); jit
propagates the shardings.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

import jaxlens

NORMALIZE = ("constant", "token_mean", "batch_constant")
DTYPES = ("float32", "bfloat16")


class LearnerError(ValueError):
    """Bad learner settings or batch."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class PPOConfig:
    """The learner's settings (defaults: SPIRAL's Kuhn Poker run).

    Attributes:
      lr: Adam learning rate (SPIRAL: 1e-6 for a 4B model; small models need ~1e-5-1e-4).
      b1, b2: Adam betas (0.9, 0.95).
      grad_clip: global-norm gradient clipping (1.0).
      clip: PPO ratio clipping epsilon (0.2).
      epochs: optimizer updates per batch (2).
      normalize: "constant" (SPIRAL: per-sequence token sum / `constant`, averaged over the
        batch's sequences), "token_mean" (token sum / response tokens) or "batch_constant"
        (token sum / `constant`).
      constant: the divisor of "constant" (4096).
      kl_coef: weight of the k3 KL to the initial policy (0: off).
      micro_batch: sequences per micro-batch (gradient accumulation over the rest).
      param_dtype: "float32" or "bfloat16" (bf16 forward, fp32 params and optimizer state).
    """

    lr: float = 1e-6
    b1: float = 0.9
    b2: float = 0.95
    grad_clip: float = 1.0
    clip: float = 0.2
    epochs: int = 2
    normalize: str = "constant"
    constant: float = 4096.0
    kl_coef: float = 0.0
    micro_batch: int = 8
    param_dtype: str = "float32"

    def __post_init__(self):
        for name in ("lr", "grad_clip", "clip", "constant"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value <= 0:
                raise LearnerError(f"PPOConfig.{name}={value!r}: expected a number > 0")
        for name in ("b1", "b2"):
            if not 0 <= getattr(self, name) < 1:
                raise LearnerError(f"PPOConfig.{name}={getattr(self, name)!r}: expected [0, 1)")
        for name in ("epochs", "micro_batch"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise LearnerError(f"PPOConfig.{name}={getattr(self, name)!r}: expected int >= 1")
        if self.normalize not in NORMALIZE:
            raise LearnerError(f"PPOConfig.normalize={self.normalize!r}: expected {NORMALIZE}")
        if self.param_dtype not in DTYPES:
            raise LearnerError(f"PPOConfig.param_dtype={self.param_dtype!r}: expected {DTYPES}")
        if self.kl_coef < 0:
            raise LearnerError(f"PPOConfig.kl_coef={self.kl_coef!r}: expected >= 0")


@struct.dataclass
class Batch:
    """Learner input; leading axes `[M micro-batches, m sequences]`."""

    tokens: jax.Array  # int32 [M, m, W]
    mask: jax.Array  # int32 [M, m, W]: 1 for real tokens
    response: jax.Array  # float32 [M, m, W-1]: 1 where target t+1 is a response token
    old_logprobs: jax.Array  # float32 [M, m, W-1]: sampling logprobs at response targets
    ref_logprobs: jax.Array  # float32 [M, m, W-1]: initial-policy logprobs (KL only)
    advantages: jax.Array  # float32 [M, m]
    # static: the response targets lie in the last `response_width` columns (left padding), so
    # only those positions get the vocabulary projection; None scores every position
    response_width: int | None = struct.field(pytree_node=False, default=None)


def optimizer(ppo: PPOConfig) -> optax.GradientTransformation:
    return optax.chain(
        optax.clip_by_global_norm(ppo.grad_clip), optax.adam(ppo.lr, b1=ppo.b1, b2=ppo.b2)
    )


def compute_params(params: Any, ppo: PPOConfig) -> Any:
    """The params the forward and generation run on (a bf16 copy when asked)."""
    if ppo.param_dtype == "float32":
        return params
    return jax.tree.map(lambda x: x.astype(jnp.bfloat16), params)


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def pack(
    prompts: Sequence[np.ndarray],
    responses: Sequence[np.ndarray],
    logprobs: Sequence[np.ndarray],
    advantages: Sequence[float],
    *,
    micro_batch: int,
    rows: int | None = None,
    multiple_of: int = 64,
    pad_id: int = 0,
) -> Batch:
    """Left-padded `prompt + response` sequences as a `[M, m, W]` batch (host numpy).

    `rows` pads the batch with zero-weight rows to a fixed count (fewer compiles); it is rounded
    up to a multiple of `micro_batch`. The width is rounded up to `multiple_of` and the scored
    response window (`Batch.response_width`) to a multiple of 8, for the same reason.
    """
    n = len(prompts)
    if not n or not (len(responses) == len(logprobs) == len(advantages) == n):
        raise LearnerError("pack: expected equal, non-zero numbers of prompts/responses/...")
    rows = max(rows or n, n)
    rows = _round_up(rows, micro_batch)
    width = max(len(p) + len(r) for p, r in zip(prompts, responses, strict=True))
    width = _round_up(width, multiple_of)
    longest_response = max(max(len(r) for r in responses), 1)
    tokens = np.full((rows, width), pad_id, np.int32)
    mask = np.zeros((rows, width), np.int32)
    response = np.zeros((rows, width - 1), np.float32)
    old = np.zeros((rows, width - 1), np.float32)
    adv = np.zeros(rows, np.float32)
    for i, (p, r, lp) in enumerate(zip(prompts, responses, logprobs, strict=True)):
        seq = np.concatenate([p, r])
        tokens[i, width - len(seq) :] = seq
        mask[i, width - len(seq) :] = 1
        if len(r):
            response[i, width - 1 - len(r) :] = 1.0  # targets are tokens[:, 1:]
            old[i, width - 1 - len(r) :] = lp
        adv[i] = advantages[i]
    m = rows // micro_batch
    shape = lambda x: x.reshape((m, micro_batch) + x.shape[1:])
    return Batch(
        tokens=shape(tokens),
        mask=shape(mask),
        response=shape(response),
        old_logprobs=shape(old),
        ref_logprobs=shape(old.copy()),
        advantages=shape(adv),
        response_width=min(_round_up(longest_response, 8), width - 1),
    )


def token_losses(logprobs, old, ref, advantages, ppo: PPOConfig):
    """Per-token PPO-clip (+ KL) losses `[..., W-1]` (before masking and normalising)."""
    ratio = jnp.exp(logprobs - old)
    a = advantages[..., None]
    clipped = jnp.clip(ratio, 1.0 - ppo.clip, 1.0 + ppo.clip)
    loss = -jnp.minimum(ratio * a, clipped * a)
    if ppo.kl_coef:
        d = ref - logprobs
        loss = loss + ppo.kl_coef * (jnp.exp(d) - d - 1.0)
    return loss, ratio


def micro_loss(params, mb: Batch, denom, *, config, ppo: PPOConfig):
    """Summed, normalised loss of one micro-batch `[m, W]` and its statistics."""
    k = mb.response_width
    window = (lambda x: x) if k is None else (lambda x: x[..., -k:])
    lp = jaxlens.token_logprobs(
        compute_params(params, ppo), mb.tokens, config=config, attention_mask=mb.mask, last=k
    )
    old, ref = window(mb.old_logprobs), window(mb.ref_logprobs)
    loss, ratio = token_losses(lp, old, ref, mb.advantages, ppo)
    w = window(mb.response)
    clipped = (jnp.abs(ratio - 1.0) > ppo.clip).astype(jnp.float32)
    d = ref - lp
    stats = {
        "clip_frac": jnp.sum(clipped * w),
        "tokens": jnp.sum(w),
        "logprob": jnp.sum(lp * w),
        "kl": jnp.sum((jnp.exp(d) - d - 1.0) * w),  # k3 to `ref` (the start policy with KL on)
    }
    return jnp.sum(loss * w) / denom, stats


def batch_loss(params, batch: Batch, *, config, ppo: PPOConfig):
    """The loss of a whole batch (the sum of its micro-batch losses)."""
    denom = _denominator(batch, ppo)
    losses = [
        micro_loss(params, jax.tree.map(lambda x, i=i: x[i], batch), denom, config=config, ppo=ppo)[
            0
        ]
        for i in range(batch.tokens.shape[0])
    ]
    return sum(losses)


def _denominator(batch: Batch, ppo: PPOConfig):
    """What the batch's token-loss sum is divided by (see the module docstring)."""
    if ppo.normalize == "batch_constant":
        return jnp.float32(ppo.constant)
    if ppo.normalize == "constant":
        sequences = jnp.sum(jnp.max(batch.mask, axis=-1))  # padding rows have an empty mask
        return jnp.float32(ppo.constant) * jnp.maximum(sequences, 1).astype(jnp.float32)
    return jnp.maximum(jnp.sum(batch.response), 1.0)


@struct.dataclass
class LearnerState:
    params: Any  # fp32 trained params
    opt_state: Any


def init_state(params: Any, ppo: PPOConfig) -> LearnerState:
    params = jax.tree.map(lambda x: jnp.array(x, jnp.float32, copy=True), params)  # update donates
    return LearnerState(params=params, opt_state=optimizer(ppo).init(params))


@functools.partial(jax.jit, static_argnames=("config", "ppo"), donate_argnums=0)
def update(state: LearnerState, batch: Batch, *, config, ppo: PPOConfig):
    """`ppo.epochs` optimizer updates on one batch; returns (state, metrics)."""
    denom = _denominator(batch, ppo)
    tx = optimizer(ppo)

    def accumulate(params):
        def body(carry, mb):
            grads, stats = carry
            (loss, st), g = jax.value_and_grad(micro_loss, has_aux=True)(
                params, mb, denom, config=config, ppo=ppo
            )
            grads = jax.tree.map(jnp.add, grads, g)
            stats = {k: stats[k] + v for k, v in {**st, "loss": loss}.items()}
            return (grads, stats), None

        zeros = jax.tree.map(jnp.zeros_like, params)
        stats0 = {k: jnp.float32(0) for k in ("clip_frac", "tokens", "logprob", "kl", "loss")}
        (grads, stats), _ = jax.lax.scan(body, (zeros, stats0), batch)
        return grads, stats

    def epoch(state: LearnerState, _):
        grads, stats = accumulate(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        tokens = jnp.maximum(stats["tokens"], 1.0)
        out = {
            "loss": stats["loss"],
            "clip_frac": stats["clip_frac"] / tokens,
            "grad_norm": optax.tree.norm(grads),
            "response_tokens": stats["tokens"],
            "mean_logprob": stats["logprob"] / tokens,
            "kl": stats["kl"] / tokens,
        }
        return LearnerState(optax.apply_updates(state.params, updates), opt_state), out

    state, per_epoch = jax.lax.scan(epoch, state, None, length=ppo.epochs)
    metrics = {
        f"{k}_{e}": v[e]
        for k, v in per_epoch.items()
        for e in range(ppo.epochs)
        if k in ("loss", "clip_frac", "grad_norm")
    }
    metrics["response_tokens"] = per_epoch["response_tokens"][0]
    metrics["mean_logprob"] = per_epoch["mean_logprob"][0]  # of the sampling params
    if ppo.kl_coef:
        metrics["kl_to_start"] = per_epoch["kl"][0]  # per response token, sampling params
    return state, metrics


@functools.partial(jax.jit, static_argnames=("config", "ppo"))
def reference_logprobs(ref_params, batch: Batch, *, config, ppo: PPOConfig):
    """Initial-policy logprobs `[M, m, W-1]` for the KL term."""

    def one(mb):
        return jaxlens.token_logprobs(
            compute_params(ref_params, ppo), mb.tokens, config=config, attention_mask=mb.mask
        )

    return jax.lax.map(one, batch)
