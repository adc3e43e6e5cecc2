"""Per-head and inner hook sites: their layouts, head selection, and the edits made for them.

Inside a layer every head site is a `[B, T, H, X]` array, indexed by query head (keys and
values repeated to the query heads, head h reading kv head h // G under GQA):

    site      X   TransformerLens      what
    q         E   hook_q               queries after rope (and q-norm)
    k, v      E   hook_k, hook_v       keys after rope, values (T: key positions)
    scores    S   hook_attn_scores     q.k / sqrt(E); masked keys at the fp32 minimum
    pattern   S   hook_pattern         softmax(scores)
    z         E   hook_z               pattern-weighted values
    result    D   hook_result          z @ W_O[h] (no bias): summed over heads + b_O = attn_out
    mlp_post  F   mlp.hook_post        the MLP's hidden activation (no head axis)

Captures return `scores`/`pattern` as `[.., B, H, (T,) S]` (TransformerLens's order); the
others keep positions before heads. `generate` captures them over its generated tokens like
any site (`flatten_step` folds heads into the last axis for its accumulators); over the KV
cache, `k` and `v` are the new tokens' and cannot be edited (the cache keeps kv heads).

The edits here are pytrees like `jaxlens.hooks`' (values traced, kinds static): `head_patch`
replaces heads' values (patching z or result from another run, a pattern edit), `head_ablate`
zeroes heads or sets them to a reference mean, and `offset` adds a per-position array at every
listed layer (the zero offset whose gradient is the attribution of `jaxlens.patching`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jaxtyping import Array, Float

from jaxlens.config import ModelConfig
from jaxlens.hooks import (
    HEAD_SITES,
    INNER_SITES,
    LAYER_SITES,
    Capture,
    Chunk,
    HookSpecError,
    Interventions,
)

_HEADS_LAST = ("scores", "pattern")  # returned with heads before query positions


def site_shape(
    site: str, config: ModelConfig, batch: int, seq: int, keys: int | None = None
) -> tuple[int, ...]:
    """A site's value inside a layer on a `[batch, seq]` chunk attending to `keys` key
    columns (default `seq`; a KV cache's width during `generate`): `[B, T, (H,) X]`."""
    c, keys = config, seq if keys is None else keys
    width = {
        "q": c.head_dim, "k": c.head_dim, "v": c.head_dim, "z": c.head_dim,
        "result": c.d_model, "scores": keys, "pattern": keys, "mlp_post": c.d_ff,
    }  # fmt: skip
    if site in HEAD_SITES:
        return (batch, seq, c.n_heads, width[site])
    return (batch, seq, width.get(site, c.d_model))


def select_heads(site: str, x: Array, heads: tuple[int, ...] | None) -> Array:
    """Keeps `heads` (static, in order) on axis 2 of a head site's `[B, T, H, X]`."""
    if heads is None or site not in HEAD_SITES:
        return x
    return jnp.take(x, np.asarray(heads, np.int32), axis=2)


def finish_capture(site: str, x: Array, capture: Capture) -> Array:
    """`[n, B, P, h, S]` -> `[n, B, h, P, S]` for scores/pattern (others unchanged)."""
    if site in _HEADS_LAST and capture.reduce in ("none", "positions"):
        return jnp.swapaxes(x, 2, 3)
    return x


def check_heads(
    capture: Capture | None,
    interventions: Interventions | None,
    config: ModelConfig,
    shape: tuple[int, int],
) -> None:
    """Head indices within `config.n_heads` (the concrete ones; traced ones are trusted) and
    head-edit values that broadcast to the site's `[B, T, X]` for a `shape = (B, T)` batch."""
    if capture is not None and capture.heads is not None:
        bad = [h for h in capture.heads if h >= config.n_heads]
        if bad:
            raise HookSpecError(f"Capture.heads {bad}: the model has {config.n_heads} heads")
    for edit in interventions.edits if interventions is not None else ():
        heads = getattr(edit, "heads", None)
        if heads is not None and not isinstance(heads, jax.core.Tracer):
            if (np.asarray(heads) >= config.n_heads).any():
                raise HookSpecError(
                    f"{type(edit).__name__} at {edit.site} names heads "
                    f"{np.asarray(heads).tolist()}: the model has {config.n_heads}"
                )
        if isinstance(edit, HeadPatch):
            want = (*shape, site_shape(edit.site, config, *shape)[-1])
            got = edit.replacement.shape[1:]
            if any(g not in (1, w) for g, w in zip(got, want, strict=True)):
                raise HookSpecError(
                    f"head_patch values at {edit.site} have shape {tuple(got)} per entry: "
                    f"expected to broadcast to [B, T, X] = {list(want)}"
                )


def check_for_generate(capture: Capture | None, interventions: Interventions | None) -> None:
    """Over a KV cache every inner site can be captured and edited except `k` and `v` edits:
    the cache keeps kv heads, so a per-query-head edit could not be written back."""
    edits = interventions.edits if interventions is not None else ()
    bad = sorted({e.site for e in edits} & {"k", "v"})
    if bad:
        raise HookSpecError(
            f"edits at {bad} are forward/model_apply only: generate's KV cache keeps kv heads"
        )


def flatten_step(site: str, x: Array) -> Array:
    """A decode step's capture `[.., B, 1, ...]` as `[.., B, 1, W]` (heads folded into the
    last axis), the layout `generate` accumulates over generated tokens."""
    if site in _HEADS_LAST:
        x = jnp.swapaxes(x, -3, -2)  # [n, B, h, 1, S] -> [n, B, 1, h, S]
    return x.reshape(x.shape[:-2] + (-1,)) if site in HEAD_SITES else x


def unflatten_capture(site: str, x: Array, capture: Capture, n_heads: int) -> Array:
    """Undoes `flatten_step` on `generate`'s accumulated `[.., B, (N|P,) W]`."""
    if site not in HEAD_SITES:
        return x
    h = n_heads if capture.heads is None else len(capture.heads)
    return finish_capture(site, x.reshape(x.shape[:-1] + (h, x.shape[-1] // h)), capture)


# --------------------------------------------------------------------------------------------
# Edits


@struct.dataclass
class HeadPatch:
    """Sets head `heads[i]` of a head site at layer `layers[i]` to `replacement[i]` where
    `where[i]` holds.

    `replacement [n|1, B|1, T|1, X]` and `where [n|1, B|1, T|1]` broadcast over entries, rows
    and positions.
    """

    site: str = struct.field(pytree_node=False)
    layers: Array  # [n] int
    heads: Array  # [n] int
    replacement: Array
    where: Array

    def apply(self, x: Float[Array, "B T H X"], layer: Array, chunk: Chunk) -> Array:
        if not chunk.is_prompt:
            return x
        b, t, h, w = x.shape
        n = self.layers.shape[0]
        values = jnp.broadcast_to(self.replacement, (n, b, t, w)).astype(x.dtype)
        where = jnp.broadcast_to(self.where, (n, b, t))
        hit = (self.layers == layer)[:, None, None, None] & where[..., None]  # [n, B, T, 1]
        hit = hit & (self.heads[:, None] == jnp.arange(h))[:, None, None, :]  # [n, B, T, H]
        slot = jnp.argmax(hit, axis=0)  # [B, T, H]: where entries overlap, the first listed wins
        new = jnp.take_along_axis(jnp.moveaxis(values, 0, 2), slot[..., None], axis=2)
        return jnp.where(hit.any(0)[..., None], new, x)


@struct.dataclass
class Offset:
    """Adds `offsets[i] [B, T, ...]` to `site` at layer `layers[i]` (any layer or inner site)."""

    site: str = struct.field(pytree_node=False)
    layers: Array  # [n] int
    offsets: Array  # [n, B, T, ...]

    def apply(self, x: Array, layer: Array, chunk: Chunk) -> Array:
        if not chunk.is_prompt:
            return x
        hit = self.layers == layer
        delta = jax.lax.dynamic_index_in_dim(self.offsets, jnp.argmax(hit), 0, keepdims=False)
        return x + jnp.where(jnp.any(hit), delta, 0).astype(x.dtype)


def _int_array(name: str, value: Any) -> Array:
    value = jnp.atleast_1d(jnp.asarray(value))
    if value.ndim != 1 or not jnp.issubdtype(value.dtype, jnp.integer):
        raise HookSpecError(f"{name}={value!r}: expected an int or a 1-d int array")
    return value.astype(jnp.int32)


def _check_head_site(site: str) -> None:
    if site not in HEAD_SITES:
        raise HookSpecError(f"head edit at {site!r}: expected one of {HEAD_SITES}")


def head_patch(
    site: str,
    layers: int | Sequence[int] | Array,
    heads: int | Sequence[int] | Array,
    values: Any,
    *,
    positions: Any = None,
) -> Interventions:
    """Replaces heads' values at a head site, e.g. patching a head's `z` or `result` from a
    clean run, or editing its `pattern`.

    Args:
      site: one of `HEAD_SITES`.
      layers, heads: paired entries `[n]` (an int broadcasts): head `heads[i]` at `layers[i]`.
      values: `[X]`, `[T, X]`, `[B, T, X]` or with a leading `[n]`: the new value of each
        (layer, head); X is the site's last axis (E, D or S). Traced: new values never
        recompile.
      positions: `[T]` or `[B, T]` bool mask of positions to replace (or `[n, B, T]`);
        None replaces every position.
    """
    _check_head_site(site)
    layers, heads = _int_array("layers", layers), _int_array("heads", heads)
    n = max(layers.shape[0], heads.shape[0])
    layers, heads = jnp.broadcast_to(layers, (n,)), jnp.broadcast_to(heads, (n,))
    values = jnp.asarray(values)
    if values.ndim < 1 or values.ndim > 4:
        raise HookSpecError(f"head_patch values have shape {values.shape}: expected [.., X]")
    values = values.reshape((1,) * (4 - values.ndim) + values.shape)  # [n|1, B|1, T|1, X]
    where = jnp.ones((1,), bool) if positions is None else jnp.asarray(positions, bool)
    if where.ndim > 3:
        raise HookSpecError(f"head_patch positions have shape {where.shape}: expected [B, T]")
    where = where.reshape((1,) * (3 - where.ndim) + where.shape)  # [n|1, B|1, T|1]
    return Interventions(
        edits=(HeadPatch(site=site, layers=layers, heads=heads, replacement=values, where=where),)
    )


def head_ablate(
    site: str,
    layers: int | Sequence[int] | Array,
    heads: int | Sequence[int] | Array,
    *,
    mean: Any = None,
    positions: Any = None,
) -> Interventions:
    """Zeroes heads at a head site (`mean=None`) or sets them to a reference mean.

    `mean`: the value to put, `[X]` or `[T, X]` (or `[n, 1, T, X]` per entry), e.g. the
    site captured on a reference batch and averaged over its rows (and positions). Values
    are traced: a new mean of the same shape never recompiles.
    """
    value = jnp.zeros((1,), jnp.float32) if mean is None else mean
    return head_patch(site, layers, heads, value, positions=positions)


def offset(site: str, layers: int | Sequence[int] | Array, offsets: Any) -> Interventions:
    """Adds `offsets [n, B, T, ...]` (the site's shape inside a layer) at `layers [n]`."""
    if site not in LAYER_SITES + INNER_SITES:
        raise HookSpecError(f"offset at {site!r}: expected one of {LAYER_SITES + INNER_SITES}")
    layers = _int_array("layers", layers)
    offsets = jnp.asarray(offsets)
    if offsets.shape[0] != layers.shape[0]:
        raise HookSpecError(
            f"offsets have shape {offsets.shape}: expected [n_layers={layers.shape[0]}, B, T, ..]"
        )
    return Interventions(edits=(Offset(site=site, layers=layers, offsets=offsets),))
