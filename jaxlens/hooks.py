"""Hook sites, capture specs and intervention pytrees.

Every decoder layer exposes five sites, in TransformerLens's meaning:

    resid_pre -> [attn] -> attn_out;  resid_mid = resid_pre + attn_out
    resid_mid -> [mlp]  -> mlp_out;   resid_post = resid_mid + mlp_out

plus `final`, the residual stream after the last norm. At each site a layer first applies the
interventions aimed at it, then records the (edited) value for the capture.

Inner sites (`INNER_SITES`, TransformerLens's names; `jaxlens.heads` has their layouts and the
per-head edits): per query head `q`, `k`, `v` (after rope), `z`, `result`, `scores`, `pattern`,
and the MLP's hidden activation `mlp_post`. A layer computes them only when a capture or an
edit names one (`SiteHook.active`), so the default program is unchanged.

`Capture` and `Interventions` are pytrees: what changes the program (sites, layers asked, reduce
mode, edit kinds, spliced functions) lives in their static fields; what is only data (steering
vectors, alphas, target layers of an edit, position masks, patch values, SAE weights) is traced.
So new values never recompile; a new *kind* of request compiles once.

Edits name their target layers as a traced int array `layers [n]`; inside the layer scan each
edit compares it with the current layer index, so no edit needs to know the model's depth.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jaxtyping import Array, Float, Shaped

LAYER_SITES = ("resid_pre", "attn_out", "resid_mid", "mlp_out", "resid_post")
FINAL_SITE = "final"
SITES = LAYER_SITES + (FINAL_SITE,)
# Per query head, in layer order; inside a layer each is `[B, T, H, X]` (see `jaxlens.heads`).
HEAD_SITES = ("q", "k", "v", "scores", "pattern", "z", "result")
INNER_SITES = HEAD_SITES + ("mlp_post",)
REDUCTIONS = ("none", "last", "mean", "positions")
POSITION_MODES = ("all", "last", "mask")


class HookSpecError(ValueError):
    """A capture or intervention request that names an unknown site, layer or mode."""


def _check_site(site: str, *, allow_final: bool = True, allow_inner: bool = False) -> None:
    allowed = (SITES if allow_final else LAYER_SITES) + (INNER_SITES if allow_inner else ())
    if site not in allowed:
        raise HookSpecError(f"unknown hook site {site!r}: expected one of {allowed}")


def _layers_tuple(
    layers: int | Sequence[int] | None, what: str = "layers"
) -> tuple[int, ...] | None:
    if layers is None:
        return None
    layers = (layers,) if isinstance(layers, (int, np.integer)) else tuple(layers)
    if not layers or any(not isinstance(x, (int, np.integer)) or x < 0 for x in layers):
        raise HookSpecError(f"{what}={layers!r}: expected non-negative indices")
    if len(set(layers)) != len(layers):
        raise HookSpecError(f"{what}={layers!r}: an index is listed twice")
    return tuple(int(x) for x in layers)


# --------------------------------------------------------------------------------------------
# Capture


@struct.dataclass
class Capture:
    """Which activations to return from `forward`/`generate`, reduced inside the jit.

    Attributes:
      sites: hook sites to capture (`LAYER_SITES`, `"final"` and/or `INNER_SITES`).
      layers: layer indices, returned in the order asked; `None` means every layer.
      heads: query-head indices kept at the head sites, in the order asked (static); `None`
        keeps every head. Selection happens before the buffers, so unasked heads cost nothing.
      reduce: over positions: `"none"` keeps `[B, T, D]`; `"last"` the last real token; `"mean"`
        the mean over the attention mask (or over `span` when given); `"positions"` gathers the
        token indices in `positions`.
      span: optional `[B, T]` mask restricting `"mean"` to a span (traced).
      positions: `[B, P]` int token indices for `"positions"` (traced).

    Captured arrays come back as `[len(layers), B, (T|P,) D]` per layer site and `[B, (T|P,) D]`
    for `"final"`. Inner sites, with `h = len(heads)` (or H) and `P` the kept positions (T for
    `"none"`, the index count for `"positions"`, none for `"last"`/`"mean"`), return (bytes:
    the product times the activation dtype's size, per layer asked):

      q, k, v, z   `[n, B, (P,) h, E]`  (k and v per query head: head h reads kv head h // G)
      result       `[n, B, (P,) h, D]`  (z @ that head's W_O slice, no bias)
      scores       `[n, B, h, (P,) S]`  (scaled q.k, masked keys at the fp32 minimum)
      pattern      `[n, B, h, (P,) S]`  (softmax of scores)
      mlp_post     `[n, B, (P,) F]`

    `[L, B, H, T, S]` exists only when asked for (`pattern`, every head, `"none"`). Inside the
    jit a layer that computes head sites also holds one layer's `[B, T, H, S]` scores,
    transiently; a captured `result` is `W_O` applied to the kept heads of the reduced `z`
    (only an edit at `result` forms one layer's `[B, T, H, D]`). During `generate`, `scores` and
    `pattern` span every cache column (`S = T + N`, prompt padding included).

    During `generate` the positions are the N generated tokens (stop included):
    `"mean"` averages over them (`span [B, N]` weights them), `"last"` takes each row's last
    one, `"none"` keeps `[.., B, N, D]` and `"positions"` indexes them (zeros past a row's
    length), as a forward pass over prompt + generated tokens would record them.
    """

    sites: tuple[str, ...] = struct.field(pytree_node=False)
    layers: tuple[int, ...] | None = struct.field(pytree_node=False, default=None)
    reduce: str = struct.field(pytree_node=False, default="none")
    span: Array | None = None
    positions: Array | None = None
    heads: tuple[int, ...] | None = struct.field(pytree_node=False, default=None)

    def __post_init__(self):
        sites = (self.sites,) if isinstance(self.sites, str) else tuple(self.sites)
        object.__setattr__(self, "sites", sites)
        object.__setattr__(self, "layers", _layers_tuple(self.layers))
        object.__setattr__(self, "heads", _layers_tuple(self.heads, "Capture.heads"))
        if not sites:
            raise HookSpecError("Capture.sites is empty: name at least one site")
        for site in sites:
            _check_site(site, allow_inner=True)
        if self.heads is not None and not set(sites) & set(HEAD_SITES):
            raise HookSpecError(
                f"Capture.heads={self.heads} selects heads, but none of {sites} is a head site "
                f"{HEAD_SITES}"
            )
        if self.reduce not in REDUCTIONS:
            raise HookSpecError(f"Capture.reduce={self.reduce!r}: expected one of {REDUCTIONS}")
        if (self.reduce == "positions") != (self.positions is not None):
            raise HookSpecError(
                "Capture.positions is required with reduce='positions' and only allowed with it"
            )
        if self.span is not None and self.reduce != "mean":
            raise HookSpecError("Capture.span is only used with reduce='mean'")

    def layer_sites(self) -> tuple[str, ...]:
        return tuple(s for s in self.sites if s != FINAL_SITE)

    def resolved_layers(self, n_layers: int) -> tuple[int, ...]:
        layers = tuple(range(n_layers)) if self.layers is None else self.layers
        bad = [x for x in layers if x >= n_layers]
        if bad:
            raise HookSpecError(f"Capture.layers {bad} out of range for a {n_layers}-layer model")
        return layers


def reduce_positions(
    x: Float[Array, "B T ..."], capture: Capture, token_mask: Shaped[Array, "B T"]
) -> Float[Array, "B ..."]:
    """Reduces `x [B, T, ...]` over positions (axis 1) as `capture.reduce` asks."""
    if capture.reduce == "none":
        return x
    trail = (None,) * (x.ndim - 2)  # index arrays broadcast over the trailing axes
    if capture.reduce == "last":
        t = jnp.arange(x.shape[1])
        last = jnp.max(jnp.where(token_mask, t, 0), axis=1)  # [B]
        return jnp.take_along_axis(x, last[(slice(None), None) + trail], axis=1)[:, 0]
    if capture.reduce == "mean":
        weights = token_mask if capture.span is None else token_mask * capture.span
        weights = weights.astype(jnp.float32)
        total = jnp.einsum("bt...,bt->b...", x.astype(jnp.float32), weights)
        scale = jnp.maximum(weights.sum(1), 1.0)[(slice(None),) + trail]
        return (total / scale).astype(x.dtype)
    index = capture.positions.astype(jnp.int32)
    return jnp.take_along_axis(x, index[(slice(None), slice(None)) + trail], axis=1)


# --------------------------------------------------------------------------------------------
# Interventions


@struct.dataclass
class Steer:
    """`x + alpha * v` (or `x + alpha * ||x|| * v` when `norm_scaled`) at chosen positions.

    `vectors` is `[n, D]` or `[n, B, D]` (one vector per batch row, e.g. an alpha sweep),
    already multiplied by alpha; `layers [n]` says where each row applies.
    """

    site: str = struct.field(pytree_node=False)
    layers: Array
    vectors: Array
    norm_scaled: bool = struct.field(pytree_node=False, default=False)
    positions: str = struct.field(pytree_node=False, default="all")
    mask: Array | None = None


@struct.dataclass
class Ablate:
    """Projects the unit direction `directions[i]` out of `x` at layer `layers[i]`."""

    site: str = struct.field(pytree_node=False)
    layers: Array
    directions: Array
    positions: str = struct.field(pytree_node=False, default="all")
    mask: Array | None = None


@struct.dataclass
class Patch:
    """Replaces `x` with `values[i] [B, T, D]` at layer `layers[i]` where `mask [B, T]` is set."""

    site: str = struct.field(pytree_node=False)
    layers: Array
    values: Array
    mask: Array


@struct.dataclass
class Splice:
    """Replaces `x` with `fn(params, x)` at the listed layers (e.g. an SAE's reconstruction).

    With `keep_error`, downstream sees `fn(params, x) + (x - fn(params, x))` with the error term
    held constant: the values equal the clean run while gradients flow through `fn`.
    """

    site: str = struct.field(pytree_node=False)
    layers: Array
    fn: Callable[[Any, Array], Array] = struct.field(pytree_node=False)
    params: Any
    keep_error: bool = struct.field(pytree_node=False, default=False)


Edit = Steer | Ablate | Patch | Splice


@struct.dataclass
class Interventions:
    """An ordered tuple of edits; `a + b` applies `a`'s edits then `b`'s."""

    edits: tuple[Edit, ...] = ()

    def __add__(self, other: Interventions) -> Interventions:
        if not isinstance(other, Interventions):
            return NotImplemented
        return Interventions(edits=self.edits + other.edits)

    def for_site(self, site: str) -> tuple[Edit, ...]:
        return tuple(e for e in self.edits if e.site == site)


def _layers_array(layers: int | Sequence[int]) -> Array:
    return jnp.asarray(_layers_tuple(layers), dtype=jnp.int32)


def _position_mode(positions: str | Any) -> tuple[str, Array | None]:
    if isinstance(positions, str):
        if positions not in ("all", "last"):
            raise HookSpecError(f"positions={positions!r}: expected 'all', 'last' or a [B, T] mask")
        return positions, None
    mask = jnp.asarray(positions)
    if mask.ndim != 2:
        raise HookSpecError(f"positions mask has shape {mask.shape}: expected [B, T]")
    return "mask", mask


def _per_layer(name: str, value: Any, n: int) -> Array:
    """Broadcasts `[D]` / `[B, D]` to one row per target layer, keeping `[n, ...]` as given."""
    value = jnp.asarray(value)
    if value.ndim in (1, 2) and not (value.ndim == 2 and value.shape[0] == n and n > 1):
        return jnp.broadcast_to(value, (n,) + value.shape)
    if value.ndim in (2, 3) and value.shape[0] == n:
        return value
    raise HookSpecError(
        f"{name} has shape {value.shape}: expected [D], [B, D], [n_layers={n}, D] "
        f"or [n_layers, B, D]"
    )


def steer(
    site: str,
    layers: int | Sequence[int],
    vectors: Any,
    *,
    alpha: Any = 1.0,
    positions: str | Any = "all",
    norm_scaled: bool = False,
) -> Interventions:
    """Adds `alpha * vectors` to `site` at `layers` (see `Steer`).

    Args:
      site: a layer hook site, e.g. `"resid_post"`.
      layers: layer index or indices.
      vectors: `[D]` (same at every layer), `[B, D]`, `[n, D]` or `[n, B, D]`.
      alpha: scalar or `[B]` multiplier (traced: changing it never recompiles).
      positions: `"all"` (every token, generated ones included), `"last"` (the prompt's last
        token) or a `[B, T]` mask over the prompt.
      norm_scaled: add `alpha * ||x|| * v` instead, scaling with the residual norm.
    """
    _check_site(site, allow_final=False)
    layers_arr = _layers_array(layers)
    vectors = _per_layer("steer vectors", vectors, layers_arr.shape[0])
    alpha = jnp.asarray(alpha, dtype=vectors.dtype)
    if alpha.ndim == 1:  # one alpha per batch row
        vectors = (
            vectors[:, None, :] * alpha[None, :, None]
            if vectors.ndim == 2
            else (vectors * alpha[None, :, None])
        )
    elif alpha.ndim == 0:
        vectors = vectors * alpha
    else:
        raise HookSpecError(f"alpha has shape {alpha.shape}: expected a scalar or [B]")
    mode, mask = _position_mode(positions)
    return Interventions(
        edits=(
            Steer(
                site=site,
                layers=layers_arr,
                vectors=vectors,
                norm_scaled=norm_scaled,
                positions=mode,
                mask=mask,
            ),
        )
    )


def ablate(
    site: str, layers: int | Sequence[int], directions: Any, *, positions: str | Any = "all"
) -> Interventions:
    """Projects the (normalised) `directions` out of `site` at `layers`."""
    _check_site(site, allow_final=False)
    layers_arr = _layers_array(layers)
    directions = _per_layer("ablate directions", directions, layers_arr.shape[0])
    norms = jnp.linalg.norm(directions, axis=-1, keepdims=True)
    directions = directions / jnp.maximum(norms, 1e-12)
    mode, mask = _position_mode(positions)
    return Interventions(
        edits=(
            Ablate(site=site, layers=layers_arr, directions=directions, positions=mode, mask=mask),
        )
    )


def patch(
    site: str, layers: int | Sequence[int], values: Any, *, mask: Any | None = None
) -> Interventions:
    """Replaces `site` at `layers` with `values` (`[B, T, D]` or `[n, B, T, D]`).

    `mask [B, T]` (default: every position) says which positions take the patched value.
    During generation a patch covers the prompt only.
    """
    _check_site(site, allow_final=False)
    layers_arr = _layers_array(layers)
    n = layers_arr.shape[0]
    values = jnp.asarray(values)
    if values.ndim == 3:
        values = jnp.broadcast_to(values, (n,) + values.shape)
    if values.ndim != 4 or values.shape[0] != n:
        raise HookSpecError(
            f"patch values have shape {values.shape}: expected [B, T, D] or [n_layers={n}, B, T, D]"
        )
    mask = jnp.ones(values.shape[1:3], bool) if mask is None else jnp.asarray(mask, bool)
    if mask.shape != values.shape[1:3]:
        raise HookSpecError(f"patch mask has shape {mask.shape}: expected {values.shape[1:3]}")
    return Interventions(edits=(Patch(site=site, layers=layers_arr, values=values, mask=mask),))


def splice(
    site: str,
    layer: int | Sequence[int],
    fn: Callable[[Any, Array], Array],
    params: Any,
    *,
    keep_error: bool = False,
) -> Interventions:
    """Replaces `site` at `layer` with `fn(params, x)`; `fn` is static, `params` traced."""
    _check_site(site, allow_final=False)
    if not callable(fn):
        raise HookSpecError(f"splice fn={fn!r} is not callable")
    return Interventions(
        edits=(
            Splice(
                site=site, layers=_layers_array(layer), fn=fn, params=params, keep_error=keep_error
            ),
        )
    )


# --------------------------------------------------------------------------------------------
# Applying edits inside a layer


@struct.dataclass
class Chunk:
    """What a layer needs to know about the tokens it is processing.

    `is_prompt` is static: a forward pass or prefill sees the prompt, a decode step one
    generated token per row. `token_mask [B, T]` marks real (non-pad) tokens.
    """

    token_mask: Array
    is_prompt: bool = struct.field(pytree_node=False, default=True)


def _position_weight(edit: Steer | Ablate, chunk: Chunk) -> Array | None | bool:
    """`[B, T, 1]` weights for where the edit applies, None for everywhere, False for nowhere."""
    if edit.positions == "all":
        return None
    if not chunk.is_prompt:
        return False  # "last" and explicit masks refer to prompt positions only
    if edit.positions == "last":
        t = chunk.token_mask.shape[1]
        return (jnp.arange(t) == t - 1)[None, :, None]
    return edit.mask[:, :, None]


def _match(layers: Array, layer: Array) -> Array:
    return (layers == layer).astype(jnp.float32)  # [n]


def _apply_edit(edit: Edit, x: Array, layer: Array, chunk: Chunk) -> Array:
    if hasattr(edit, "apply"):  # edits defined beside their sites (`jaxlens.heads`)
        return edit.apply(x, layer, chunk)
    if isinstance(edit, Splice):

        def spliced(x):
            x_hat = edit.fn(edit.params, x).astype(x.dtype)
            return x_hat + jax.lax.stop_gradient(x - x_hat) if edit.keep_error else x_hat

        return jax.lax.cond(jnp.any(edit.layers == layer), spliced, lambda x: x, x)
    if isinstance(edit, Patch):
        if not chunk.is_prompt:
            return x
        hit = edit.layers == layer
        slot = jnp.argmax(hit)
        where = jnp.any(hit) & edit.mask[:, :, None]
        return jnp.where(where, edit.values[slot].astype(x.dtype), x)
    weight = _position_weight(edit, chunk)
    if weight is False:
        return x
    match = _match(edit.layers, layer)
    if isinstance(edit, Steer):
        delta = jnp.tensordot(match, edit.vectors.astype(jnp.float32), axes=1)  # [D] or [B, D]
        delta = delta[None, None] if delta.ndim == 1 else delta[:, None]
        if edit.norm_scaled:
            delta = delta * jnp.linalg.norm(x.astype(jnp.float32), axis=-1, keepdims=True)
    else:  # Ablate
        u = jnp.tensordot(match, edit.directions.astype(jnp.float32), axes=1)
        u = u[None, None] if u.ndim == 1 else u[:, None]
        delta = -jnp.sum(x.astype(jnp.float32) * u, axis=-1, keepdims=True) * u
    if weight is not None:
        delta = delta * weight
    return (x.astype(jnp.float32) + delta).astype(x.dtype)


def apply_edits(edits: tuple[Edit, ...], x: Array, layer: Array, chunk: Chunk) -> Array:
    for edit in edits:
        x = _apply_edit(edit, x, layer, chunk)
    return x


@dataclasses.dataclass(frozen=True)
class SiteHook:
    """What a decoder layer calls at each hook site: `hook(name, x) -> x` (edit, then record).

    `active` (static) names the inner sites a capture or an edit asks for; a layer computes
    an inner site only when it is active, so a plain forward compiles as before. `reduced`
    names captured sites that nothing edits, which a layer may hand over already reduced:
    `hook.reduce(name, x)` selects heads and reduces positions as the capture asks,
    `hook.record(name, value)` stores such a value (the layer computes a per-head `result`
    from the reduced `z` and the `heads` kept, never the whole `[B, T, H, D]`).
    """

    fn: Callable[[str, Array], Array]
    active: frozenset[str] = frozenset()
    reduced: frozenset[str] = frozenset()
    reduce: Callable[[str, Array], Array] | None = None
    record: Callable[[str, Array], None] | None = None
    heads: tuple[int, ...] | None = None  # the capture's head selection

    def __call__(self, name: str, x: Array) -> Array:
        return self.fn(name, x)


def active_sites(capture: Capture | None, interventions: Interventions | None) -> frozenset[str]:
    """The inner sites a capture or an intervention names."""
    names = set(capture.sites if capture is not None else ())
    names |= {e.site for e in (interventions.edits if interventions is not None else ())}
    return frozenset(names & set(INNER_SITES))
