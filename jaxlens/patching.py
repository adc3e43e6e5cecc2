"""Activation patching sweeps as one compiled program; attribution patching in one backward
pass; path patching from one head to others' inputs (`path_patch`, two forwards in one jit).

A sweep runs the corrupted batch once per grid point (layer x position, optionally x head),
each time with one site's clean activation patched in, and returns `metric(logits)` for every
point. In TransformerLens that is a Python loop of forward passes; here every patched forward
is the same program with traced edit values, so the grid is `vmap`ped and run in chunks of
`chunk` forwards by `lax.map` inside one `jit`. Peak memory is about `chunk` forwards'
activations on `[B, T]` plus the clean activations of the site (`[L, B, T, ...]`); by default
`chunk` is the most forwards that fit `max_bytes` (`sweep_chunk`).

Attribution patching (Nanda 2023; Syed et al. 2023) approximates the same grid to first order:
`sum_x grad(metric)(corrupted) * (clean - corrupted)` at every site at once, the gradient taken
through a zero `jaxlens.heads.offset` at every layer in one backward pass. It returns the
estimated change `metric(patched) - metric(corrupted)`, summed over batch rows.

Grids: `over` names the swept axes among `("layer", "pos", "head")`; positions are columns of
the (equally padded) clean and corrupted batches, patched in every row at once; without
`"pos"` every position is patched together; `"head"` needs a head site.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, Shaped

from jaxlens.config import ModelConfig
from jaxlens.heads import HeadPatch, Offset
from jaxlens.hooks import HEAD_SITES, LAYER_SITES, Capture, HookSpecError, Interventions, Patch
from jaxlens.model import model_apply
from jaxlens.params import Params

AXES = ("layer", "pos", "head")
Metric = Callable[[Float[Array, "B T V"]], Array]


def _check(site: str, over: tuple[str, ...]) -> None:
    if site not in LAYER_SITES + HEAD_SITES:
        raise HookSpecError(f"patching site {site!r}: expected one of {LAYER_SITES + HEAD_SITES}")
    if not over or any(a not in AXES for a in over) or len(set(over)) != len(over):
        raise HookSpecError(f"over={over!r}: expected distinct axes among {AXES}")
    if over != tuple(a for a in AXES if a in over):
        raise HookSpecError(f"over={over!r}: list the axes in the order {AXES}")
    if "head" in over and site not in HEAD_SITES:
        raise HookSpecError(f"over={over!r} sweeps heads: {site!r} is not a head site")


def site_activations(
    params: Params,
    tokens: Int[Array, "B T"],
    mask: Shaped[Array, "B T"],
    site: str,
    config: ModelConfig,
) -> Array:
    """Every layer's value of `site` as a layer sees it: `[L, B, T, (H,) X]`."""
    out = model_apply(params, tokens, config=config, attention_mask=mask, capture=Capture((site,)))
    acts = out.captures[site]
    return jnp.swapaxes(acts, 2, 3) if site in ("scores", "pattern") else acts


def _batches(clean: Any, corrupted: Any, attention_mask: Any) -> tuple[Array, Array, Array]:
    """`(clean, corrupted, mask)` as int32 / bool arrays of one `[B, T]` shape."""
    clean, corrupted = jnp.asarray(clean, jnp.int32), jnp.asarray(corrupted, jnp.int32)
    if clean.ndim != 2 or clean.shape != corrupted.shape:
        raise HookSpecError(
            f"clean {clean.shape} and corrupted {corrupted.shape}: expected one [B, T] shape"
        )
    mask = jnp.ones(clean.shape, bool) if attention_mask is None else jnp.asarray(attention_mask)
    if mask.shape != clean.shape:
        raise HookSpecError(f"attention_mask {mask.shape}: expected {clean.shape}")
    return clean, corrupted, mask.astype(bool)


def _patched_metric(params, corrupted, mask, edits, *, config, metric, logits_last):
    """`metric` of the corrupted run under `edits` (logits of the last `logits_last` positions
    only, when given: the unembedding is skipped where the metric does not look)."""
    logits = model_apply(
        params, corrupted, config=config, attention_mask=mask,
        interventions=Interventions(edits=tuple(edits)), logits_last=logits_last,
    ).logits  # fmt: skip
    return metric(logits)


def _edit(site: str, clean: Array, layer: Array, where: Array, head: Array | None):
    """One grid point's patch: `clean [L, B, T, ...]` at `layer` where `where [B, T]` holds."""
    value = jax.lax.dynamic_index_in_dim(clean, layer, 0, keepdims=False)  # [B, T, ...]
    if site in LAYER_SITES:
        return Patch(site=site, layers=layer[None], values=value[None], mask=where)
    if head is None:  # every head of the layer at once
        h = value.shape[2]
        return HeadPatch(
            site=site, layers=jnp.full((h,), layer), heads=jnp.arange(h),
            replacement=jnp.moveaxis(value, 2, 0), where=where[None],
        )  # fmt: skip
    replacement = jax.lax.dynamic_index_in_dim(value, head, 2, keepdims=False)
    return HeadPatch(
        site=site, layers=layer[None], heads=head[None], replacement=replacement[None],
        where=where[None],
    )  # fmt: skip


@functools.partial(
    jax.jit,
    static_argnames=("config", "metric", "site", "over", "chunk", "grid_shape", "logits_last"),
)
def _sweep(
    params, clean, corrupted, mask, grid, *, config, metric, site, over, chunk, grid_shape,
    logits_last,
):  # fmt: skip
    clean_acts = site_activations(params, clean, mask, site, config)
    t = clean.shape[1]
    kw = dict(config=config, metric=metric, logits_last=logits_last)

    def one(point: Array) -> Array:
        layer, pos, head = point[0], point[1], point[2]
        where = jnp.broadcast_to(jnp.arange(t) == pos, mask.shape) if "pos" in over else mask
        edit = _edit(site, clean_acts, layer, where, head if "head" in over else None)
        return _patched_metric(params, corrupted, mask, (edit,), **kw)

    values = jax.lax.map(one, grid, batch_size=chunk)
    return values.reshape(grid_shape + values.shape[1:])


def forward_bytes(config: ModelConfig, batch: int, seq: int) -> int:
    """A rough bound on the live activations of one forward on `[batch, seq]`: its fp32
    logits, one layer's attention scores and MLP hidden state, a few residual-width copies."""
    c, item = config, jnp.dtype(config.dtype).itemsize
    per_token = 4 * c.vocab_size + item * (
        8 * c.d_model + 3 * c.d_ff + 3 * c.n_heads * seq + 4 * c.n_heads * c.head_dim
    )
    return batch * seq * per_token


def sweep_chunk(config: ModelConfig, batch: int, seq: int, max_bytes: int, points: int) -> int:
    """How many patched forwards of a `points`-point sweep run at once under `max_bytes`."""
    return int(max(1, min(points, max_bytes // forward_bytes(config, batch, seq))))


def _grid(over, config, t, layers, positions, heads) -> tuple[np.ndarray, tuple[int, ...]]:
    """`[n, 3]` int rows (layer, pos, head) in C order over the swept axes, and their shape."""
    axes = {
        "layer": np.arange(config.n_layers) if layers is None else np.asarray(layers),
        "pos": np.arange(t) if positions is None else np.asarray(positions),
        "head": np.arange(config.n_heads) if heads is None else np.asarray(heads),
    }
    swept = [axes[a] if a in over else np.zeros(1, np.int64) for a in AXES]
    mesh = np.meshgrid(*swept, indexing="ij")
    grid = np.stack([m.reshape(-1) for m in mesh], axis=1).astype(np.int32)
    return grid, tuple(len(axes[a]) for a in over)


def patch_sweep(
    params: Params,
    clean: Int[Array, "B T"],
    corrupted: Int[Array, "B T"],
    metric: Metric,
    *,
    config: ModelConfig,
    site: str = "resid_pre",
    over: Sequence[str] = ("layer", "pos"),
    attention_mask: Shaped[Array, "B T"] | None = None,
    layers: Sequence[int] | None = None,
    positions: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    chunk: int | None = None,
    max_bytes: int = 2**30,
    logits_last: int | None = None,
) -> Array:
    """`metric` of the corrupted run with each single clean activation patched in.

    Args:
      clean, corrupted: `[B, T]` token batches aligned position by position (one
        `attention_mask` for both, left padded alike).
      metric: `logits [B, T, V] -> scalar` (or any fixed shape); static: pass the same
        function object to reuse the compiled program.
      site: a layer site (`resid_pre`, `attn_out`, ...) or a head site (`z`, `result`, ...).
      over: the swept axes, in the order `("layer", "pos", "head")`.
      layers, positions, heads: the values of each swept axis (default: all).
      chunk: patched forwards run at once; None: as many as `max_bytes` of activations
        allow (`sweep_chunk`, a rough estimate; see the module docstring).
      logits_last: static; `metric` sees the logits of the last k positions only
        (`[B, k, V]`), and the vocabulary projection of the others is skipped.

    Returns:
      `[len(layers), len(positions), len(heads)]` over the swept axes (+ the metric's shape).
    """
    over = tuple(over)
    _check(site, over)
    clean, corrupted, mask = _batches(clean, corrupted, attention_mask)
    grid, shape = _grid(over, config, clean.shape[1], layers, positions, heads)
    if chunk is None:
        chunk = sweep_chunk(config, *clean.shape, max_bytes, len(grid))
    return _sweep(
        params, clean, corrupted, mask, jnp.asarray(grid), config=config,
        metric=metric, site=site, over=over, chunk=int(chunk), grid_shape=shape,
        logits_last=logits_last,
    )  # fmt: skip


def attribution_patch(
    params: Params,
    clean: Int[Array, "B T"],
    corrupted: Int[Array, "B T"],
    metric: Metric,
    *,
    config: ModelConfig,
    site: str = "resid_pre",
    over: Sequence[str] = ("layer", "pos"),
    attention_mask: Shaped[Array, "B T"] | None = None,
    logits_last: int | None = None,
) -> Array:
    """First-order estimate of `patch_sweep(...) - metric(corrupted)` over every layer,
    position (and head), from one forward and one backward pass of the corrupted run.

    Returns `[L, T]`, `[L, T, H]`, `[L]` or `[L, H]` as `over` asks (a scalar `metric`).
    """
    over = tuple(over)
    _check(site, over)
    clean, corrupted, mask = _batches(clean, corrupted, attention_mask)
    return _attribution(
        params, clean, corrupted, mask, config=config, metric=metric, site=site, over=over,
        logits_last=logits_last,
    )  # fmt: skip


@functools.partial(jax.jit, static_argnames=("config", "metric", "site", "over", "logits_last"))
def _attribution(params, clean, corrupted, mask, *, config, metric, site, over, logits_last):
    diff = site_activations(params, clean, mask, site, config) - site_activations(
        params, corrupted, mask, site, config
    )  # [L, B, T, (H,) X]
    layers = jnp.arange(config.n_layers)

    def patched_metric(offsets: Array) -> Array:
        edit = Offset(site=site, layers=layers, offsets=offsets)
        return _patched_metric(
            params, corrupted, mask, (edit,), config=config, metric=metric,
            logits_last=logits_last,
        )  # fmt: skip

    grad = jax.grad(patched_metric)(jnp.zeros_like(diff))
    attr = jnp.sum(grad.astype(jnp.float32) * diff.astype(jnp.float32), axis=-1).sum(1)
    if site in HEAD_SITES and "head" not in over:
        attr = attr.sum(-1)  # [L, T]
    return attr if "pos" in over else attr.sum(1)  # [L, T, (H)] or [L, (H)]


def path_patch(
    params: Params,
    clean: Int[Array, "B T"],
    corrupted: Int[Array, "B T"],
    metric: Metric,
    *,
    config: ModelConfig,
    sender: tuple[int, int],
    receivers: Sequence[tuple[int, int]],
    receiver_sites: Sequence[str] = ("q", "k", "v"),
    attention_mask: Shaped[Array, "B T"] | None = None,
    logits_last: int | None = None,
) -> Array:
    """`metric` of the corrupted run when the clean output of the `sender` head `(layer,
    head)` reaches only the `receivers`' inputs (`receiver_sites` of each `(layer, head)`).

    Two forwards (Wang et al. 2022): the first patches the sender's `result` and freezes
    every later attention and MLP output at its corrupted value, so the residual stream
    differs only by the sender's direct contribution, and records the receivers' q/k/v; the
    second patches those into the corrupted run and reads the metric.
    """
    sender = (int(sender[0]), int(sender[1]))
    receivers = tuple((int(layer), int(head)) for layer, head in receivers)
    receiver_sites = tuple(receiver_sites)
    for layer, head in (sender, *receivers):
        if not (0 <= layer < config.n_layers and 0 <= head < config.n_heads):
            raise HookSpecError(
                f"head ({layer}, {head}): the model has {config.n_layers} layers of "
                f"{config.n_heads} heads"
            )
    if any(layer <= sender[0] for layer, _ in receivers) or not receivers:
        raise HookSpecError(f"receivers {receivers}: expected heads in layers after {sender[0]}")
    if not receiver_sites or any(s not in ("q", "k", "v") for s in receiver_sites):
        raise HookSpecError(f"receiver_sites={receiver_sites}: expected among 'q', 'k', 'v'")
    clean, corrupted, mask = _batches(clean, corrupted, attention_mask)
    return _path(
        params, clean, corrupted, mask, config=config, metric=metric, sender=sender,
        receivers=receivers, receiver_sites=receiver_sites, logits_last=logits_last,
    )  # fmt: skip


@functools.partial(
    jax.jit,
    static_argnames=("config", "metric", "sender", "receivers", "receiver_sites", "logits_last"),
)
def _path(
    params, clean, corrupted, mask, *, config, metric, sender, receivers, receiver_sites,
    logits_last,
):  # fmt: skip
    s_layer, s_head = sender
    sender_out = site_activations(params, clean, mask, "result", config)[s_layer][:, :, s_head]
    frozen = model_apply(
        params, corrupted, config=config, attention_mask=mask,
        capture=Capture(("attn_out", "mlp_out")),
    ).captures  # fmt: skip
    later = np.arange(s_layer + 1, config.n_layers)
    first = Interventions(
        edits=(
            HeadPatch(site="result", layers=jnp.array([s_layer]), heads=jnp.array([s_head]),
                      replacement=sender_out[None], where=mask[None]),
            Patch(site="attn_out", layers=jnp.asarray(later), values=frozen["attn_out"][later],
                  mask=mask),
            Patch(site="mlp_out", layers=jnp.arange(s_layer, config.n_layers),
                  values=frozen["mlp_out"][s_layer:], mask=mask),
        )
    )  # fmt: skip
    inputs = model_apply(
        params, corrupted, config=config, attention_mask=mask, interventions=first,
        capture=Capture(receiver_sites),
    ).captures  # fmt: skip
    layers = jnp.array([layer for layer, _ in receivers])
    heads = jnp.array([head for _, head in receivers])
    second = tuple(
        HeadPatch(
            site=site, layers=layers, heads=heads, where=mask[None],
            replacement=inputs[site][layers, :, :, heads],  # [n, B, T, E]
        )
        for site in receiver_sites
    )  # fmt: skip
    return _patched_metric(
        params, corrupted, mask, second, config=config, metric=metric, logits_last=logits_last
    )
