"""Transformer building blocks as Flax Linen modules (see `jaxlens.model` for the design).

Axis vocabulary: B batch, T query positions, S key positions, D d_model, H query heads,
K kv heads, E head dim, F MLP width, V vocab, L layers.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jaxtyping import Array, Bool, Float, Int

from jaxlens.config import ModelConfig
from jaxlens.dtypes import canonical_dtype
from jaxlens.hooks import HEAD_SITES, Chunk


def _active(site: Any) -> frozenset[str]:
    """The inner sites asked for (`hooks.SiteHook.active`; a bare function asks for none)."""
    return getattr(site, "active", frozenset())


def _dtype(value: Any) -> jnp.dtype:
    return jnp.dtype(canonical_dtype(value))


def _param(
    module: nn.Module, name: str, axes: tuple[str, ...], shape: tuple[int, ...], init: Any = None
) -> Array:
    init = init or nn.initializers.normal(0.02)
    return module.param(
        name, nn.with_logical_partitioning(init, axes), shape, _dtype(module.config.param_dtype)
    )


class Norm(nn.Module):
    """RMSNorm (Llama family) or LayerNorm (GPT-2); statistics in fp32 as HF does."""

    config: ModelConfig
    width: int
    eps: float

    @nn.compact
    def __call__(self, x: Array) -> Array:
        scale = _param(self, "scale", ("norm",), (self.width,), nn.initializers.ones)
        x32 = x.astype(jnp.float32)
        if self.config.norm == "rms":
            x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
            return (scale * x32.astype(x.dtype)).astype(x.dtype)
        bias = _param(self, "bias", ("norm",), (self.width,), nn.initializers.zeros)
        mean = jnp.mean(x32, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
        x32 = (x32 - mean) * jax.lax.rsqrt(var + self.eps)
        return (x32 * scale.astype(jnp.float32) + bias.astype(jnp.float32)).astype(x.dtype)


def rope_inv_freq(config: ModelConfig) -> np.ndarray:
    """Rotary inverse frequencies `[E/2]` in float32, with Llama 3.1 rescaling if configured."""
    e = config.head_dim
    inv_freq = 1.0 / (
        config.rope_theta ** (np.arange(0, e, 2, dtype=np.int64).astype(np.float32) / e)
    )
    scaling = config.rope_scaling
    if scaling is None:
        return inv_freq.astype(np.float32)
    low_wavelen = scaling.original_max_position_embeddings / scaling.low_freq_factor
    high_wavelen = scaling.original_max_position_embeddings / scaling.high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    scaled = np.where(wavelen > low_wavelen, inv_freq / scaling.factor, inv_freq)
    smooth = (scaling.original_max_position_embeddings / wavelen - scaling.low_freq_factor) / (
        scaling.high_freq_factor - scaling.low_freq_factor
    )
    smoothed = (1 - smooth) * scaled / scaling.factor + smooth * scaled
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return np.where(medium, smoothed, scaled).astype(np.float32)


def rope_tables(
    config: ModelConfig, positions: Int[Array, "B T"], dtype: jnp.dtype
) -> tuple[Float[Array, "B T E"], Float[Array, "B T E"]]:
    """`sin, cos [B, T, E]` for integer `positions [B, T]` (HF's half-split layout)."""
    freqs = positions.astype(jnp.float32)[..., None] * jnp.asarray(rope_inv_freq(config))
    emb = jnp.concatenate([freqs, freqs], axis=-1)
    return jnp.sin(emb).astype(dtype), jnp.cos(emb).astype(dtype)


def apply_rope(
    x: Float[Array, "B T H E"], sin: Float[Array, "B T E"], cos: Float[Array, "B T E"]
) -> Float[Array, "B T H E"]:
    """Rotates `x [B, T, N, E]` by the tables `[B, T, E]`."""
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos[:, :, None, :] + rotated * sin[:, :, None, :]


@struct.dataclass
class KVCache:
    """Preallocated keys and values of every layer: `k, v [L, B, K, S, E]`.

    Heads before keys: each (batch, kv head) pair owns a contiguous `[S, E]` block, which both
    attention matmuls of a decode step read in place (no per-step transpose of the cache).
    """

    k: Array
    v: Array

    @classmethod
    def init(cls, config: ModelConfig, batch: int, max_len: int, dtype: Any = None) -> KVCache:
        shape = (config.n_layers, batch, config.n_kv_heads, max_len, config.head_dim)
        dtype = _dtype(config.dtype if dtype is None else dtype)
        return cls(k=jnp.zeros(shape, dtype), v=jnp.zeros(shape, dtype))


@struct.dataclass
class Step:
    """Per-call inputs every layer shares (built once outside the scan).

    `sin`/`cos [B, T, E]` rope tables (None for learned positions); `mask [B, 1, T, S]` which
    keys each query may see; `cache_index` where this chunk's keys go in the cache.
    """

    chunk: Chunk
    mask: Array
    sin: Array | None = None
    cos: Array | None = None
    cache_index: Array | None = None


def matmul_2d(spec: str, x: Array, kernel: Array) -> Array:
    """`einsum(spec, x, kernel)` for specs whose contracted axes end `x` and start `kernel`
    (e.g. `BTHE,HED->BTD`), computed as one `[.., in] @ [in, out]` matmul on flattened views.

    The same contraction, but XLA then never permutes a (loop-invariant) weight to match the
    layout of a small activation, as it otherwise does for `o_proj` in a decode step.
    """
    inputs, out = spec.split("->")
    xs, ks = inputs.split(",")
    n_in = (len(xs) + len(ks) - len(out)) // 2  # contracted axes
    if xs[len(xs) - n_in :] != ks[:n_in] or out != xs[: len(xs) - n_in] + ks[n_in:]:
        return jnp.einsum(spec, x, kernel)
    lead, in_shape, out_shape = x.shape[: x.ndim - n_in], kernel.shape[:n_in], kernel.shape[n_in:]
    y = x.reshape(lead + (math.prod(in_shape),)) @ kernel.reshape(math.prod(in_shape), -1)
    return y.reshape(lead + out_shape)


class Dense(nn.Module):
    """`einsum(spec, x, kernel) (+ bias)` with logically named kernel axes."""

    config: ModelConfig
    spec: str
    shape: tuple[int, ...]
    axes: tuple[str, ...]
    bias: bool = False
    bias_dims: int = 1  # trailing kernel dims the bias covers

    @nn.compact
    def __call__(self, x: Array) -> Array:
        kernel = _param(self, "kernel", self.axes, self.shape)
        y = matmul_2d(self.spec, x, kernel.astype(x.dtype))
        if self.bias:
            y = y + _param(
                self,
                "bias",
                self.axes[-self.bias_dims :],
                self.shape[-self.bias_dims :],
                nn.initializers.zeros,
            ).astype(x.dtype)
        return y


def cache_write(cache: KVCache, layer: Any, index: Array, k: Array, v: Array) -> KVCache:
    """Writes `k, v [B, T, K, E]` at key columns `[index, index + T)` of `layer`.

    A per-layer cache (`k, v [B, K, S, E]`, see `model.unstack_layers`) has no layer axis.
    """

    def put(buf: Array, x: Array) -> Array:
        x = jnp.swapaxes(x, 1, 2).astype(buf.dtype)  # [B, K, T, E]
        if buf.ndim == 4:
            return jax.lax.dynamic_update_slice(buf, x, (0, 0, index, 0))
        return jax.lax.dynamic_update_slice(buf, x[None], (layer, 0, 0, index, 0))

    return KVCache(k=put(cache.k, k), v=put(cache.v, v))


def cache_read(cache: KVCache, layer: Any, dtype: Any) -> tuple[Array, Array]:
    """`k, v [B, K, S, E]` of `layer`."""
    if cache.k.ndim == 4:
        return cache.k.astype(dtype), cache.v.astype(dtype)
    return tuple(
        jax.lax.dynamic_index_in_dim(buf, layer, keepdims=False).astype(dtype)
        for buf in (cache.k, cache.v)
    )


def attend_cached(
    q: Float[Array, "B T H E"],
    k: Float[Array, "B K S E"],
    v: Float[Array, "B K S E"],
    mask: Bool[Array, "B 1 T S"],
    scale: float,
) -> Float[Array, "B T H E"]:
    """Softmax attention of `q [B, T, H, E]` over a cache `k, v [B, K, S, E]` (fp32 softmax).

    Query head `h` reads kv head `h // G` (`H = K * G`), as HF's `repeat_kv`; `mask
    [B, 1, T, S]`. Matches `jax.nn.dot_product_attention` on the same keys.
    """
    b, t, h, e = q.shape
    n_kv = k.shape[1]
    q = q.reshape(b, t, n_kv, h // n_kv, e)
    scores = jnp.einsum("BTKGE,BKSE->BKGTS", q, k, preferred_element_type=jnp.float32) * scale
    scores = jnp.where(mask[:, :, None], scores, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(scores, axis=-1).astype(q.dtype)
    return jnp.einsum("BKGTS,BKSE->BTKGE", probs, v).reshape(b, t, h, e)


def attend_per_head(
    q: Float[Array, "B T H E"],
    k: Float[Array, "B S H E"],
    v: Float[Array, "B S H E"],
    mask: Bool[Array, "B 1 T S"],
    scale: float,
    site: Any,
) -> Float[Array, "B T H E"]:
    """Attention written out per query head (keys and values already repeated to the query
    heads), calling `site` at `scores`, `pattern` and `z` (edits apply, captures record); the
    same numbers as `jax.nn.dot_product_attention`. Scores and pattern are laid out
    `[B, T, H, S]` here (query positions first, as the capture reduces them).
    """
    scores = jnp.einsum("BTHE,BSHE->BTHS", q, k, preferred_element_type=jnp.float32) * scale
    scores = jnp.where(mask[:, 0, :, None, :], scores, jnp.finfo(jnp.float32).min)
    scores = site("scores", scores)
    pattern = site("pattern", jax.nn.softmax(scores, axis=-1).astype(q.dtype))
    return site("z", jnp.einsum("BTHS,BSHE->BTHE", pattern, v))


def per_head_inputs(
    q: Array, k: Array, v: Array, step: Step, layer: Array, cache: KVCache | None, site: Any
) -> tuple[Array, Array, Array, KVCache | None]:
    """`q, k, v` per query head for `attend_per_head`, with the `q`, `k`, `v` sites applied.

    Keys and values are repeated to the query heads (`H = K * G`, head h reads kv head h // G,
    HF's `repeat_kv`), so every head site is indexed by query head. Over a KV cache the sites
    see this chunk's new keys and values; the cache keeps the unedited kv heads (an edit at
    `k` or `v` is refused there: it could not be written back per query head).
    """
    g = q.shape[2] // k.shape[2]
    q = site("q", q)
    k_new, v_new = site("k", jnp.repeat(k, g, axis=2)), site("v", jnp.repeat(v, g, axis=2))
    if cache is None:
        return q, k_new, v_new, None
    cache = cache_write(cache, layer, step.cache_index, k, v)
    k, v = (jnp.repeat(jnp.swapaxes(a, 1, 2), g, axis=2) for a in cache_read(cache, layer, q.dtype))
    return q, k, v, cache


class HeadOutput(nn.Module):
    """`o_proj` kept per head: `result [B, T, H, D]` (site `result`), summed over heads + bias.

    Same parameters as the `Dense` it replaces when `result` is asked for. When `result` is
    only captured (`site.reduced`), the output is the fused projection and the capture is
    `W_O` applied to the selected heads of the reduced `z` (reduction commutes with `W_O`),
    so no `[B, T, H, D]` is formed.
    """

    config: ModelConfig

    @nn.compact
    def __call__(self, z: Float[Array, "B T H E"], site: Any) -> Float[Array, "B T D"]:
        c = self.config
        shape, axes = (c.n_heads, c.head_dim, c.d_model), ("heads", "head_dim", "embed")
        kernel = _param(self, "kernel", axes, shape).astype(z.dtype)
        if "result" in getattr(site, "reduced", ()):
            heads = range(c.n_heads) if site.heads is None else site.heads
            w_o = jnp.take(kernel, np.asarray(heads, np.int32), axis=0)  # [h, E, D]
            site.record("result", jnp.einsum("...HE,HED->...HD", site.reduce("z", z), w_o))
            out = matmul_2d("BTHE,HED->BTD", z, kernel)
        else:
            out = site("result", jnp.einsum("BTHE,HED->BTHD", z, kernel)).sum(axis=2)
        if c.o_bias:
            out = out + _param(self, "bias", axes[-1:], shape[-1:], nn.initializers.zeros)
        return out.astype(z.dtype)


class Attention(nn.Module):
    config: ModelConfig

    @nn.compact
    def __call__(
        self, x: Array, step: Step, layer: Array, cache: KVCache | None, site: Any = None
    ) -> tuple[Array, KVCache | None]:
        c = self.config
        dt = x.dtype
        q_shape, kv_shape = (
            (c.d_model, c.n_heads, c.head_dim),
            (c.d_model, c.n_kv_heads, c.head_dim),
        )
        q = Dense(
            c,
            "BTD,DHE->BTHE",
            q_shape,
            ("embed", "heads", "head_dim"),
            c.qkv_bias,
            2,
            name="q_proj",
        )(x)
        k = Dense(
            c,
            "BTD,DKE->BTKE",
            kv_shape,
            ("embed", "kv_heads", "head_dim"),
            c.qkv_bias,
            2,
            name="k_proj",
        )(x)
        v = Dense(
            c,
            "BTD,DKE->BTKE",
            kv_shape,
            ("embed", "kv_heads", "head_dim"),
            c.qkv_bias,
            2,
            name="v_proj",
        )(x)
        if c.qk_norm:
            q = Norm(c, c.head_dim, c.norm_eps, name="q_norm")(q)
            k = Norm(c, c.head_dim, c.norm_eps, name="k_norm")(k)
        if step.sin is not None:
            q, k = apply_rope(q, step.sin, step.cos), apply_rope(k, step.sin, step.cos)
        scale = 1.0 / math.sqrt(c.head_dim)
        inner = _active(site) & set(HEAD_SITES)
        if inner:  # written out per head; without head sites the fused path below, as before
            q, k, v, cache = per_head_inputs(q, k, v, step, layer, cache, site)
            z = attend_per_head(q, k, v, step.mask, scale, site)
            if "result" in inner:
                return HeadOutput(c, name="o_proj")(z, site), cache
            out = z
        elif cache is None:
            out = jax.nn.dot_product_attention(q, k, v, mask=step.mask, scale=scale)
        else:
            cache = cache_write(cache, layer, step.cache_index, k, v)
            k, v = cache_read(cache, layer, dt)
            out = attend_cached(q, k, v, step.mask, scale)  # [B, T, H, E]
        out = Dense(
            c,
            "BTHE,HED->BTD",
            (c.n_heads, c.head_dim, c.d_model),
            ("heads", "head_dim", "embed"),
            c.o_bias,
            name="o_proj",
        )(out)
        return out, cache


class MLP(nn.Module):
    config: ModelConfig

    @nn.compact
    def __call__(self, x: Array, site: Any = None) -> Array:
        c = self.config
        up_in = ((c.d_model, c.d_ff), ("embed", "mlp"))
        up = Dense(c, "BTD,DF->BTF", *up_in, c.mlp_bias, name="up_proj")(x)
        if c.gated_mlp:
            gate = Dense(c, "BTD,DF->BTF", *up_in, c.mlp_bias, name="gate_proj")(x)
            hidden = jax.nn.silu(gate) * up
        else:
            hidden = jax.nn.gelu(up, approximate=True)  # GPT-2's gelu_new
        if "mlp_post" in _active(site):
            hidden = site("mlp_post", hidden)
        return Dense(
            c, "BTF,FD->BTD", (c.d_ff, c.d_model), ("mlp", "embed"), c.mlp_bias, name="down_proj"
        )(hidden)


class DecoderLayer(nn.Module):
    """Pre-norm block; `site(name, x)` applies interventions and records captures."""

    config: ModelConfig

    @nn.compact
    def __call__(
        self, x: Array, step: Step, layer: Array, cache: KVCache | None, site: Any
    ) -> tuple[Array, KVCache | None]:
        c = self.config
        x = site("resid_pre", x)
        attn, cache = Attention(c, name="attn")(
            Norm(c, c.d_model, c.norm_eps, name="attn_norm")(x), step, layer, cache, site
        )
        x = site("resid_mid", x + site("attn_out", attn))
        mlp = MLP(c, name="mlp")(Norm(c, c.d_model, c.norm_eps, name="mlp_norm")(x), site)
        x = site("resid_post", x + site("mlp_out", mlp))
        return x, cache


class Embedding(nn.Module):
    config: ModelConfig
    rows: int
    axes: tuple[str, str]

    @nn.compact
    def __call__(self, ids: Array) -> Array:
        table = _param(self, "embedding", self.axes, (self.rows, self.config.d_model))
        return jnp.take(table, ids, axis=0)
