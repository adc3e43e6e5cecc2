"""The decoder: Flax Linen layers applied functionally, all layers under one `lax.scan`.

Axis vocabulary (shape comments, einsum strings and logical sharding names agree):

    B batch   T query positions   S key positions   D d_model   H query heads
    K kv heads   E head dim   F MLP width   V vocab   L layers

A model is `(config, params)`; `params` is a plain nested dict whose decoder-layer leaves carry
a leading `L` axis (see `jaxlens.hf.names` for the HF name mapping). Each layer is a Linen
module; `lax.scan` runs it over the stacked weights, so compile time does not grow with depth.

The same scan serves a plain forward pass, a prefill that fills a KV cache, and a one-token
decode step: `apply_model` takes the rope positions, the attention mask over keys and an
optional cache. `model_apply` is the whole-sequence case as a plain differentiable function
(what learners and metrics `jit`/`grad` themselves); `forward` validates and jits it.
Given per-layer params and caches (`unstack_layers`) the same layer body runs unrolled instead,
which `generate` uses for its memory-bound decode steps (see `jaxlens.generate`).
Captures are written into per-site buffers `[n, B, ...]` carried through the layers (layers
not asked for write into a spare slot that is dropped), so nothing leaves the jit as a side
effect. Numerics follow HF: norm statistics in fp32, rope tables computed in fp32 and cast to
the activation dtype, softmax in fp32 (`jax.nn.dot_product_attention`, or
`layers.attend_cached` over a KV cache).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jaxtyping import Array, Bool, Float, Int, Shaped

from jaxlens.config import ModelConfig
from jaxlens.heads import check_heads, finish_capture, select_heads, site_shape
from jaxlens.hooks import (
    FINAL_SITE,
    Capture,
    Chunk,
    Interventions,
    SiteHook,
    active_sites,
    apply_edits,
    reduce_positions,
)
from jaxlens.inputs import check_specs, check_tokens
from jaxlens.layers import DecoderLayer, Embedding, KVCache, Norm, Step, rope_tables
from jaxlens.params import Params, check_params

# --------------------------------------------------------------------------------------------
# The scan over layers


def attention_mask(
    config: ModelConfig, query_index: Int[Array, " T"], key_valid: Shaped[Array, "B S"]
) -> Bool[Array, "B 1 T S"]:
    """`[B, 1, T, S]`: key `s` is visible to query `t` if real, not later, inside the window.

    `query_index [T]` are the queries' columns in the key sequence; `key_valid [B, S]` marks
    real (non-pad, already written) keys.
    """
    s = jnp.arange(key_valid.shape[1])
    visible = s[None, :] <= query_index[:, None]  # [T, S]
    if config.sliding_window is not None:
        visible &= query_index[:, None] - s[None, :] < config.sliding_window
    return visible[None, None] & key_valid[:, None, None, :].astype(bool)


@struct.dataclass
class _Carry:
    x: Array
    cache: KVCache | None
    captures: dict[str, Array]


class ForwardOutput(NamedTuple):
    """`logits [B, T, V]` fp32; `captures`: site -> `[L, B, (T,) D]` (`final`: `[B, (T,) D]`)."""

    logits: Float[Array, "B T V"]
    captures: dict[str, Array]


def _capture_buffers(
    capture: Capture | None, x: Array, step: Step, config: ModelConfig
) -> tuple[dict[str, Array], np.ndarray]:
    """Zeroed capture buffers `[n (+1), B, (T,) ...]` per layer site and the layer -> slot
    table.

    Layers not asked for write into one spare last slot (dropped at the end) rather than
    being masked out, so no layer reads a buffer back.
    """
    n_layers = config.n_layers
    if capture is None or not capture.layer_sites():
        return {}, np.zeros(n_layers, np.int32)
    layers = capture.resolved_layers(n_layers)
    slots = np.full(n_layers, len(layers), np.int32)
    slots[list(layers)] = np.arange(len(layers))
    spare = int(len(layers) < n_layers)

    def buffer(site: str) -> Array:
        shape = site_shape(site, config, *x.shape[:2], keys=step.mask.shape[-1])
        shape = jax.eval_shape(
            lambda h: reduce_positions(
                select_heads(site, h, capture.heads), capture, step.chunk.token_mask
            ),
            jax.ShapeDtypeStruct(shape, x.dtype),
        ).shape
        return jnp.zeros((len(layers) + spare,) + shape, x.dtype)

    return {s: buffer(s) for s in capture.layer_sites()}, slots


def _drop_spare(captures: dict[str, Array], capture: Capture | None, n_layers: int):
    """Drops the spare slot and puts each site in its returned layout."""
    if capture is None:
        return captures
    n = len(capture.resolved_layers(n_layers))
    return {
        s: finish_capture(s, a[:n] if a.shape[0] > n else a, capture) for s, a in captures.items()
    }


def _layer_body(
    config: ModelConfig,
    step: Step,
    slots: Array,
    capture: Capture | None,
    interventions: Interventions | None,
):
    """One decoder layer as a function of `(carry, params, layer, cache_slot)`.

    `layer` is the model's layer index (edits, captures); `cache_slot` the index of this
    layer's keys/values in `carry.cache` (the layer itself for a stacked cache, 0 for a
    per-layer cache).
    """

    active = active_sites(capture, interventions)
    edited = {e.site for e in (interventions.edits if interventions is not None else ())}
    captured = set(capture.sites) if capture is not None else set()
    reduced = frozenset({"result"} & (active & captured) - edited)

    def reduce(name: str, h: Array) -> Array:
        return reduce_positions(
            select_heads(name, h, capture.heads), capture, step.chunk.token_mask
        )

    def layer_body(carry: _Carry, params: Params, layer: Array, cache_slot: Array) -> _Carry:
        captures = dict(carry.captures)

        def record(name: str, new: Array) -> None:
            captures[name] = jax.lax.dynamic_update_index_in_dim(
                captures[name], new.astype(captures[name].dtype), slots[layer], 0
            )

        def site(name: str, h: Array) -> Array:
            if interventions is not None:
                h = apply_edits(interventions.for_site(name), h, layer, step.chunk)
            if name in captures:
                record(name, reduce(name, h))
            return h

        heads = None if capture is None else capture.heads
        hook = SiteHook(site, active, reduced, reduce, record, heads)
        x, cache = DecoderLayer(config).apply(
            {"params": params}, carry.x, step, cache_slot, carry.cache, hook
        )
        return _Carry(x=x, cache=cache, captures=captures)

    return layer_body


# Dots without batch dimensions are the weight matmuls (the attention's batch over B and heads).
_SAVE_PROJECTIONS = jax.checkpoint_policies.dots_with_no_batch_dims_saveable


def _run_layers(
    layer_params: Params | Sequence[Params],
    x: Array,
    step: Step,
    cache: KVCache | Sequence[KVCache] | None,
    *,
    config: ModelConfig,
    capture: Capture | None,
    interventions: Interventions | None,
) -> _Carry:
    """All decoder layers: one `lax.scan` over stacked params, or (given a sequence of
    per-layer params and per-layer caches, see `unstack_layers`) an unrolled loop."""
    buffers, slot_table = _capture_buffers(capture, x, step, config)
    body = _layer_body(config, step, jnp.asarray(slot_table), capture, interventions)
    if isinstance(layer_params, (list, tuple)):
        caches = [None] * config.n_layers if cache is None else list(cache)
        carry = _Carry(x=x, cache=None, captures=buffers)
        for layer, params in enumerate(layer_params):
            carry = body(carry.replace(cache=caches[layer]), params, jnp.int32(layer), 0)
            caches[layer] = carry.cache
        captures = _drop_spare(carry.captures, capture, config.n_layers)
        return carry.replace(cache=None if cache is None else tuple(caches), captures=captures)

    # Under `grad`, the backward pass keeps the projections' outputs and recomputes attention:
    # saving every layer's [B, H, T, T] probabilities costs more (memory and, on a CPU, the time
    # to fill and copy them) than recomputing them (a 6-layer, 8 x 320-token gradient: 2.37 s ->
    # 2.03 s on 2 cores). No effect without `grad`.
    @functools.partial(jax.checkpoint, policy=_SAVE_PROJECTIONS)
    def scan_body(carry: _Carry, xs: tuple[Params, Array]) -> tuple[_Carry, None]:
        params, layer = xs
        return body(carry, params, layer, layer), None

    carry = _Carry(x=x, cache=cache, captures=buffers)
    carry, _ = jax.lax.scan(scan_body, carry, (layer_params, jnp.arange(config.n_layers)))
    return carry.replace(captures=_drop_spare(carry.captures, capture, config.n_layers))


def unstack_layers(params: Params, cache: KVCache | None = None):
    """Per-layer views of stacked params (and cache) for `apply_model`'s unrolled loop.

    A scan slices every layer's weights out of the stacked arrays at each call, which XLA
    materialises as copies; that is noise next to a prompt's matmuls but doubles the memory
    traffic of a one-token decode step. Unstacking once, before the decode loop, lets each
    step read the weights and its layer's cache in place (at the price of a second copy of
    the layer weights while generating).
    """
    n = jax.tree.leaves(params["layers"])[0].shape[0]
    layers = [jax.tree.map(lambda a, i=i: a[i], params["layers"]) for i in range(n)]
    caches = None
    if cache is not None:
        caches = tuple(KVCache(k=cache.k[i], v=cache.v[i]) for i in range(n))
    return {**params, "layers": layers}, caches


def apply_model(
    params: Params,
    tokens: Int[Array, "B T"],
    *,
    config: ModelConfig,
    positions: Int[Array, "B T"],
    mask: Bool[Array, "B 1 T S"],
    token_mask: Shaped[Array, "B T"],
    is_prompt: bool = True,
    cache: KVCache | tuple[KVCache, ...] | None = None,
    cache_index: Array | None = None,
    capture: Capture | None = None,
    interventions: Interventions | None = None,
    logits_last: int | None = None,
) -> tuple[ForwardOutput, KVCache | tuple[KVCache, ...] | None]:
    """The model on one chunk of tokens `[B, T]` (unvalidated; call under `jit`).

    Args:
      positions: `[B, T]` position ids (rope angle / learned-table row).
      mask: `[B, 1, T, S]` visibility (see `attention_mask`); `S = T` without a cache.
      token_mask: `[B, T]` real tokens of this chunk (capture reductions, position edits).
      is_prompt: static; False for a decode step (prompt-only edits then do nothing).
      cache / cache_index: KV cache and where this chunk's keys go. With `params["layers"]`
        a list of per-layer params (`unstack_layers`) the layers run unrolled and `cache` is
        the matching tuple of per-layer caches.
      logits_last: static; logits `[B, k, V]` of the last k positions only (None: all). The
        vocabulary projection is skipped where nobody reads it (decode: 1; a learner scoring
        only the response tokens: their count + 1).
    """
    c = config
    step = Step(
        chunk=Chunk(token_mask=token_mask.astype(bool), is_prompt=is_prompt),
        mask=mask,
        cache_index=cache_index,
    )
    x, step = _embed(params, tokens, positions, step, c)
    carry = _run_layers(
        params["layers"], x, step, cache, config=c, capture=capture, interventions=interventions
    )
    x = Norm(c, c.d_model, c.norm_eps).apply({"params": params["final_norm"]}, carry.x)
    captures = dict(carry.captures)
    if capture is not None and FINAL_SITE in capture.sites:
        captures[FINAL_SITE] = reduce_positions(x, capture, step.chunk.token_mask)
    if logits_last is not None:
        x = x[:, -logits_last:]
    return ForwardOutput(logits=unembed(params, x, c), captures=captures), carry.cache


def _embed(
    params: Params, tokens: Int[Array, "B T"], positions: Int[Array, "B T"], step: Step,
    c: ModelConfig,
) -> tuple[Float[Array, "B T D"], Step]:  # fmt: skip
    """Token (+ learned position) embeddings; with rope, the step carries its sin/cos tables."""
    dt = jnp.dtype(c.dtype)
    x = Embedding(c, c.vocab_size, ("vocab", "embed")).apply({"params": params["embed"]}, tokens)
    x = x.astype(dt)
    if c.positions == "learned":
        table = Embedding(c, c.max_seq_len, ("positions", "embed"))
        return x + table.apply({"params": params["pos_embed"]}, positions).astype(dt), step
    sin, cos = rope_tables(c, positions, dt)
    return x, step.replace(sin=sin, cos=cos)


def unembed(params: Params, x: Float[Array, "B T D"], config: ModelConfig) -> Float[Array, "B T V"]:
    """fp32 logits of final-normed residuals (the tied embedding or the `lm_head`)."""
    dt = jnp.dtype(config.dtype)
    if config.tie_embeddings:
        table = params["embed"]["embedding"]
        return jnp.einsum("BTD,VD->BTV", x, table.astype(dt), preferred_element_type=jnp.float32)
    kernel = params["lm_head"]["kernel"]
    return jnp.einsum("BTD,DV->BTV", x, kernel.astype(dt), preferred_element_type=jnp.float32)


def positions_from_mask(token_mask: Shaped[Array, "B T"]) -> Int[Array, "B T"]:
    """Position ids under left padding: a padded row equals the unpadded one."""
    return jnp.maximum(jnp.cumsum(token_mask.astype(jnp.int32), axis=1) - 1, 0)


def segment_positions(segments: Int[Array, "B T"]) -> Int[Array, "B T"]:
    """Position ids that restart at 0 where the document id changes along each row."""
    index = jnp.arange(segments.shape[1])
    starts = jnp.concatenate(
        [jnp.ones_like(segments[:, :1], bool), segments[:, 1:] != segments[:, :-1]], axis=1
    )
    return index - jax.lax.cummax(jnp.where(starts, index, 0), axis=1)


def model_apply(
    params: Params,
    tokens: Int[Array, "B T"],
    *,
    config: ModelConfig,
    attention_mask: Shaped[Array, "B T"] | None = None,
    positions: Int[Array, "B T"] | None = None,
    interventions: Interventions | None = None,
    capture: Capture | None = None,
    logits_last: int | None = None,
    segments: Int[Array, "B T"] | None = None,
) -> ForwardOutput:
    """The model on a whole left-padded sequence: un-jitted, unvalidated, differentiable.

    The body that `forward` validates and jits, for code that builds its own `jit`, `grad` or
    `vmap` (learners, metrics). Call it under `jit` with `config` static.

    Args:
      tokens: `[B, T]` int token ids.
      attention_mask: `[B, T]` 1 for real tokens, 0 for (left) padding; None: all real.
      positions: `[B, T]` position ids; None follows the mask (a padded row equals its
        unpadded version).
      interventions / capture: as for `forward`.
      logits_last: static; logits of the last k positions only (None: all T).
      segments: `[B, T]` int document ids of packed rows (documents laid end to end, ids
        non-decreasing along a row): a token sees only its own document, and positions
        restart at each document's first token, so every document reads as if alone.

    Returns:
      `ForwardOutput(logits [B, T or k, V] fp32, captures)`.
    """
    token_mask = (
        jnp.ones(tokens.shape, bool) if attention_mask is None else attention_mask.astype(bool)
    )
    mask = attention_mask_for(config, token_mask, tokens.shape[1])
    if segments is not None:
        mask &= (segments[:, :, None] == segments[:, None, :])[:, None]
    if positions is None:
        positions = (
            positions_from_mask(token_mask) if segments is None else segment_positions(segments)
        )
    out, _ = apply_model(
        params,
        tokens,
        config=config,
        positions=positions,
        mask=mask,
        token_mask=token_mask,
        capture=capture,
        interventions=interventions,
        logits_last=logits_last,
    )
    return out


_jitted_model_apply = jax.jit(model_apply, static_argnames=("config",))


def attention_mask_for(
    config: ModelConfig, token_mask: Shaped[Array, "B T"], t: int
) -> Bool[Array, "B 1 T T"]:
    """Causal + padding (+ sliding window) mask `[B, 1, T, T]` for a whole sequence."""
    return attention_mask(config, jnp.arange(t), token_mask)


def forward(
    params: Params,
    tokens: Any,
    *,
    config: ModelConfig,
    attention_mask: Any = None,
    capture: Capture | None = None,
    interventions: Interventions | None = None,
) -> ForwardOutput:
    """Runs the model on left-padded `tokens [B, T]`; validated, jitted, cached per shape.

    Positions follow `attention_mask` (left padding), so a padded row equals its unpadded
    version. Returns `ForwardOutput(logits [B, T, V] fp32, captures)`.
    """
    if not isinstance(config, ModelConfig):
        raise TypeError(f"config={config!r}: expected a jaxlens.ModelConfig")
    check_params(params, config)
    tokens, mask = check_tokens(tokens, attention_mask, config)
    check_specs(capture, interventions, config, tuple(tokens.shape))
    check_heads(capture, interventions, config, tuple(tokens.shape))
    return _jitted_model_apply(
        params,
        tokens,
        config=config,
        attention_mask=mask,
        interventions=interventions,
        capture=capture,
    )
