"""Batched autoregressive generation with a preallocated KV cache, interventions and capture.

One jitted program per (shapes, config, sampling, stop tokens, capture/edit kinds):

    prefill:  the left-padded prompts `[B, T]` run through `apply_model` once, writing their keys
              and values into cache columns `[0, T)` and sampling the first new token.
    decode:   a `lax.while_loop` whose body feeds the last sampled token (one column, `T + i - 1`)
              and samples the next; it ends after `max_new_tokens` or once every row has stopped.

Column layout of the cache (`S = T + N`, N = `max_new_tokens`): prompts are left padded, so every
row's last prompt token sits in column `T - 1` and generated token `j` goes to column `T + j` in
every row at the same step; the rows differ only in which prompt columns are padding. The mask
over keys is rebuilt each step from `key_valid [B, S]` (prompt mask, plus the generated columns
written so far) by `model.attention_mask`, and rope positions continue from each row's real
prompt length, so a padded row computes exactly what it would alone.

Interventions run in the prefill and at every decode step, with position semantics that hold
under the cache: `"all"` covers prompt and generated tokens, `"last"` and explicit `[B, T]`
masks (and patches) cover prompt positions only (see `jaxlens.hooks`). Capture during
generation covers the generated tokens, i.e. what a forward pass over `prompt + tokens[:length]`
would record at the new positions: `"mean"` (optionally weighted by a `[B, N]` span), `"last"`
(the last generated token), `"none"` (`[.., B, N, D]`, zero after a stop) or `"positions"`
(indices into the generated tokens). The last generated token is fed once more, without
sampling, so that its own activations are recorded; that extra step runs only when capturing.

Decode steps are memory-bound (one token per row against every weight), so they avoid copies
and read weights in the layout the matmul streams fastest. The cache is created inside the
jitted program and updated in place in the loop carry. By default (`unroll_layers=True`) the
layer weights and the cache are split into per-layer arrays once, after the prefill, and the
decode step runs its layers unrolled: under the layer scan XLA copies each layer's weights out
of the stacked arrays at every step. Those per-layer copies (and the LM head) are stored
transposed, `[out, in]` (`jaxlens.decode_layout`): XLA's CPU matmul of a few rows against a
row-major `[in, out]` weight repacks the weight at every call, against `[out, in]` it reads it
in place. The price is a second copy of the weights while generating; the prefill keeps the
scan and the caller's params.

`logprobs` are the model's own log-probabilities of the emitted tokens (log-softmax of the raw
logits, before temperature/top-k/top-p), which is what likelihood-based analyses and policy
gradients need; rows that stopped carry pad tokens with logprob 0.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct
from jaxtyping import Array, Float, Int

from jaxlens.config import ModelConfig
from jaxlens.decode_layout import pack_kernels, unpack_kernels
from jaxlens.heads import check_for_generate, check_heads, flatten_step, unflatten_capture
from jaxlens.hooks import Capture, Interventions
from jaxlens.inputs import check_generation, check_specs, check_tokens
from jaxlens.layers import KVCache
from jaxlens.model import apply_model, attention_mask, positions_from_mask, unstack_layers
from jaxlens.params import check_params
from jaxlens.sampling import Sampling, SamplingError, sample_token

Params = dict[str, Any]


class GenerateOutput(NamedTuple):
    """`tokens [B, new]` int32 new tokens (pad after a stop, `new = max_new_tokens`);
    `lengths [B]` tokens generated, stop token included; `logprobs [B, new]` fp32 model
    log-probabilities (0 after a stop); `captures` site -> `[L, B, (new|P,) D]` (`final`:
    `[B, (new|P,) D]`) over generated tokens (`P` given positions)."""

    tokens: Int[Array, "B new"]
    lengths: Int[Array, " B"]
    logprobs: Float[Array, "B new"]
    captures: dict[str, Array]


# --------------------------------------------------------------------------------------------
# Capture over generated tokens


def _step_capture(capture: Capture | None) -> Capture | None:
    """What one decode step records: every asked site at its single position."""
    if capture is None:
        return None
    return Capture(sites=capture.sites, layers=capture.layers, reduce="none", heads=capture.heads)


def _capture_init(capture: Capture | None, shapes: dict[str, Any], n: int) -> dict[str, Array]:
    """Accumulators per site from one step's capture shapes `[.., B, 1, D]`."""
    if capture is None:
        return {}
    acc = {}
    for site, shape in shapes.items():
        shape = jax.eval_shape(lambda x, site=site: flatten_step(site, x), shape)
        lead, d = shape.shape[:-2], shape.shape[-1]
        extra = {"none": (n,), "last": (), "mean": ()}.get(capture.reduce)
        extra = (capture.positions.shape[1],) if extra is None else extra
        acc[site] = jnp.zeros(lead + extra + (d,), jnp.float32)
    return acc


def _capture_weight(capture: Capture, valid: Array, index: Array) -> Array:
    """`[B]` weight of generated token `index`: 1 where real (times the span for "mean")."""
    weight = valid.astype(jnp.float32)
    if capture.span is not None:
        weight = weight * jax.lax.dynamic_index_in_dim(capture.span, index, 1, False)
    return weight


def _capture_update(
    capture: Capture, acc: dict[str, Array], step: dict[str, Array], index: Array, valid: Array
) -> dict[str, Array]:
    """Folds the fed token's activations `[.., B, 1, D]` (generated index `index`) into `acc`.

    `valid [B]` marks rows for which that token is a real generated token.
    """
    weight = _capture_weight(capture, valid, index)[:, None]  # [B, 1]
    new = {}
    for site, h in step.items():
        h = flatten_step(site, h)[..., 0, :].astype(jnp.float32)  # [.., B, D]
        if capture.reduce == "mean":
            new[site] = acc[site] + h * weight
        elif capture.reduce == "last":
            new[site] = jnp.where(valid[:, None], h, acc[site])
        elif capture.reduce == "none":
            col = (h * weight)[..., None, :]  # [.., B, 1, D]
            new[site] = jax.lax.dynamic_update_index_in_dim(acc[site], col, index, h.ndim - 1)
        else:  # positions: indices into the generated tokens
            hit = (capture.positions == index).astype(jnp.float32) * weight  # [B, P]
            new[site] = acc[site] + hit[:, :, None] * h[..., :, None, :]
    return new


def _capture_finish(
    capture: Capture | None, acc: dict[str, Array], total: Array, config: ModelConfig
) -> dict[str, Array]:
    if capture is None:
        return {}
    if capture.reduce == "mean":
        acc = {s: a / jnp.maximum(total, 1e-30)[:, None] for s, a in acc.items()}
    return {
        s: unflatten_capture(s, a, capture, config.n_heads).astype(config.dtype)
        for s, a in acc.items()
    }


# --------------------------------------------------------------------------------------------
# The program


@struct.dataclass
class _Prompt:
    """What every decode step needs about the prompts: `keys [B, S]` real prompt columns (the
    generated columns still False) and `lengths [B]` real prompt tokens per row."""

    keys: Array
    lengths: Array
    width: int = struct.field(pytree_node=False)  # T, the first generated column


@struct.dataclass
class _Decode:
    """While-loop state; `step` i feeds generated token i - 1 and samples token i."""

    step: Array  # [] int32
    cache: KVCache
    tokens: Array  # [B, N + 1] int32 (one spare column for the capture-only step)
    logprobs: Array  # [B, N + 1] fp32
    lengths: Array  # [B] int32
    done: Array  # [B] bool: no more tokens for this row
    captures: dict[str, Array]
    weight: Array  # [B] fp32: summed capture weights (for "mean")


def _decode_step(
    params: Params,
    fed: Array,
    cache: KVCache,
    index: Array,
    prompt: _Prompt,
    *,
    config: ModelConfig,
    capture: Capture | None,
    interventions: Interventions | None,
) -> tuple[Any, KVCache]:
    """Runs generated token `index` (`fed [B]`) through the model at cache column `T + index`."""
    column = prompt.width + index
    columns = jnp.arange(prompt.keys.shape[1])
    key_valid = prompt.keys | ((columns >= prompt.width) & (columns <= column))[None]
    return apply_model(
        params,
        fed[:, None],
        config=config,
        positions=(prompt.lengths + index)[:, None],
        mask=attention_mask(config, column[None], key_valid),
        token_mask=jnp.ones((fed.shape[0], 1), bool),
        is_prompt=False,
        cache=cache,
        cache_index=column,
        capture=capture,
        interventions=interventions,
        logits_last=1,
    )


def _emit(
    state: _Decode,
    logits: Array,
    key: Array,
    *,
    n: int,
    sampling: Sampling,
    stop_tokens: tuple[int, ...],
    pad_id: int,
) -> _Decode:
    """Samples generated token `state.step` for the rows still running (no-op once `step == n`)."""
    token, logprob = sample_token(logits, key, sampling)
    active = ~state.done & (state.step < n)
    token = jnp.where(active, token, pad_id)
    logprob = jnp.where(active, logprob, 0.0)
    lengths = state.lengths + active.astype(jnp.int32)
    stopped = jnp.isin(token, jnp.asarray(stop_tokens, jnp.int32)) if stop_tokens else False
    col = jnp.minimum(state.step, n)
    return state.replace(
        tokens=jax.lax.dynamic_update_index_in_dim(state.tokens, token, col, 1),
        logprobs=jax.lax.dynamic_update_index_in_dim(state.logprobs, logprob, col, 1),
        lengths=lengths,
        done=state.done | (active & stopped) | (lengths >= n),
    )


def _prefill(
    params: Params,
    prompts: Array,
    prompt_mask: Array,
    prompt: _Prompt,
    n: int,
    config: ModelConfig,
    interventions: Interventions | None,
) -> tuple[Array, KVCache]:
    """Runs the prompts into a fresh `[L, B, K, T + n, E]` cache; last-position logits `[B, V]`."""
    b, t = prompts.shape
    out, cache = apply_model(
        params,
        prompts,
        config=config,
        positions=positions_from_mask(prompt_mask),
        mask=attention_mask(config, jnp.arange(t), prompt.keys),
        token_mask=prompt_mask,
        cache=KVCache.init(config, b, t + n),
        cache_index=jnp.int32(0),
        interventions=interventions,
        logits_last=1,
    )
    return out.logits[:, -1], cache


def _decode_layout(params: Params, cache: Any, *, unroll: bool, transpose: bool):
    """`(params, cache, weights)` as the decode loop reads them: per-layer copies when
    `unroll`, kernels packed transposed when also `transpose` (`weights(params)` reads them
    back as views inside the loop: `jaxlens.decode_layout.unpack_kernels`)."""
    if unroll:
        params, cache = unstack_layers(params, cache)
    if unroll and transpose:
        return pack_kernels(params), cache, unpack_kernels
    return params, cache, lambda p: p


def _initial_state(
    params: Params,
    prompts: Array,
    cache: Any,
    prompt: _Prompt,
    capture: Capture | None,
    n: int,
    pad_id: int,
    step_kw: dict[str, Any],
) -> _Decode:
    """The decode loop's carry before the first token: empty outputs, zeroed capture buffers
    (shaped by tracing one decode step, at no cost)."""
    b = prompts.shape[0]
    shapes = jax.eval_shape(
        lambda: _decode_step(params, prompts[:, 0], cache, jnp.int32(0), prompt, **step_kw)
    )[0].captures
    return _Decode(
        step=jnp.int32(0),
        cache=cache,
        tokens=jnp.full((b, n + 1), pad_id, jnp.int32),
        logprobs=jnp.zeros((b, n + 1), jnp.float32),
        lengths=jnp.zeros(b, jnp.int32),
        done=jnp.zeros(b, bool),
        captures=_capture_init(capture, shapes, n),
        weight=jnp.zeros(b, jnp.float32),
    )


@jax.jit(
    static_argnames=(
        "config",
        "max_new_tokens",
        "sampling",
        "stop_tokens",
        "pad_id",
        "unroll",
        "transpose",
    )
)
def _generate(
    params: Params,
    prompts: Array,
    prompt_mask: Array,
    key: Array,
    interventions: Interventions | None,
    capture: Capture | None,
    *,
    config: ModelConfig,
    max_new_tokens: int,
    sampling: Sampling,
    stop_tokens: tuple[int, ...],
    pad_id: int,
    unroll: bool,
    transpose: bool,
) -> GenerateOutput:
    t = prompts.shape[1]
    n = max_new_tokens
    prompt = _Prompt(
        keys=jnp.pad(prompt_mask, ((0, 0), (0, n))),
        lengths=prompt_mask.sum(axis=1).astype(jnp.int32),
        width=t,
    )
    key_first, key_decode = jax.random.split(key)
    emit = dict(n=n, sampling=sampling, stop_tokens=stop_tokens, pad_id=pad_id)
    step_kw = dict(config=config, capture=_step_capture(capture), interventions=interventions)
    logits, cache = _prefill(params, prompts, prompt_mask, prompt, n, config, interventions)
    params, cache, weights = _decode_layout(params, cache, unroll=unroll, transpose=transpose)
    state = _initial_state(weights(params), prompts, cache, prompt, capture, n, pad_id, step_kw)
    state = _emit(state, logits, key_first, **emit).replace(step=jnp.int32(1))
    last_step = n if capture is not None else n - 1  # capturing feeds the last token too

    def decode_cond(state: _Decode) -> Array:
        running = ~state.done
        if capture is not None:
            running |= (state.step - 1) < state.lengths  # generated tokens not yet fed back
        return (state.step <= last_step) & jnp.any(running)

    def decode_body(state: _Decode) -> _Decode:
        index = state.step - 1
        fed = jax.lax.dynamic_index_in_dim(state.tokens, index, 1, keepdims=False)
        out, cache = _decode_step(weights(params), fed, state.cache, index, prompt, **step_kw)
        state = state.replace(cache=cache)
        if capture is not None:
            valid = index < state.lengths
            state = state.replace(
                captures=_capture_update(capture, state.captures, out.captures, index, valid),
                weight=state.weight + _capture_weight(capture, valid, index),
            )
        step_key = jax.random.fold_in(key_decode, state.step)
        state = _emit(state, out.logits[:, -1], step_key, **emit)
        return state.replace(step=state.step + 1)

    state = jax.lax.while_loop(decode_cond, decode_body, state)
    return GenerateOutput(
        tokens=state.tokens[:, :n],
        lengths=state.lengths,
        logprobs=state.logprobs[:, :n],
        captures=_capture_finish(capture, state.captures, state.weight, config),
    )


# --------------------------------------------------------------------------------------------
# Public entry point


def generate(
    params: Params,
    prompts: Any,
    *,
    config: ModelConfig,
    key: Array,
    max_new_tokens: int,
    attention_mask: Any = None,
    sampling: Sampling = Sampling(),  # noqa: B008 - frozen, immutable default
    stop_tokens: tuple[int, ...] | list[int] = (),
    interventions: Interventions | None = None,
    capture: Capture | None = None,
    unroll_layers: bool = True,
    transpose_kernels: bool = True,
) -> GenerateOutput:
    """Generates `max_new_tokens` tokens after left-padded `prompts [B, T]`.

    Args:
      params / config: the model.
      prompts: `[B, T]` int token ids, left padded (see `jaxlens.prompts.chat_batch`).
      key: PRNG key for sampling (unused when greedy).
      max_new_tokens: N, the number of decode steps at most (static).
      attention_mask: `[B, T]` 1 for real tokens, 0 for left padding (default: all real).
      sampling: temperature / top-k / top-p (`Sampling(temperature=0.0)` is greedy).
      stop_tokens: ids that end a row (the stop token is kept and counted in `lengths`).
      interventions: edits applied in the prefill and at every decode step.
      capture: activations over the generated tokens (see the module docstring).
      unroll_layers: run decode steps over per-layer copies of the layer weights and cache
        (see the module docstring); False keeps the layer scan and a single copy of the
        weights, for models that only just fit in memory.
      transpose_kernels: with `unroll_layers`, store those per-layer copies transposed
        (`jaxlens.decode_layout`), the layout XLA's CPU matmul reads fastest for a few rows.

    Returns:
      `GenerateOutput(tokens [B, N], lengths [B], logprobs [B, N], captures)`.
    """
    tokens, mask, stop_tokens = _checked(
        params, prompts, attention_mask, config, sampling, max_new_tokens, stop_tokens,
        interventions, capture,
    )  # fmt: skip
    pad_id = config.pad_token_id if config.pad_token_id is not None else 0
    return _generate(
        params,
        tokens,
        mask,
        key,
        interventions,
        capture,
        config=config,
        max_new_tokens=max_new_tokens,
        sampling=sampling,
        stop_tokens=stop_tokens,
        pad_id=pad_id,
        unroll=unroll_layers,
        transpose=transpose_kernels,
    )


def _checked(params, prompts, attention_mask, config, sampling, n, stop_tokens, interventions,
             capture):  # fmt: skip
    """`generate`'s inputs validated: `(tokens, mask, stop_tokens)`, or a clear error. Capture
    spans and positions during `generate` index the N generated tokens."""
    if not isinstance(config, ModelConfig):
        raise TypeError(f"config={config!r}: expected a jaxlens.ModelConfig")
    if not isinstance(sampling, Sampling):
        raise SamplingError(f"sampling={sampling!r}: expected a jaxlens.Sampling")
    check_params(params, config)
    tokens, mask = check_tokens(prompts, attention_mask, config, name="prompts")
    stop_tokens = check_generation(mask, config, n, stop_tokens)
    check_specs(None, interventions, config, tuple(tokens.shape))
    check_for_generate(capture, interventions)
    check_heads(capture, interventions, config, tuple(tokens.shape))
    if capture is not None:
        check_specs(capture, None, config, (tokens.shape[0], n))
    return tokens, mask, stop_tokens
