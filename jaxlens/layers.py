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

from jaxlens.config import ModelConfig
from jaxlens.hooks import Chunk

Array = jax.Array


def _dtype(name: str) -> jnp.dtype:
    return jnp.dtype(name)


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


def rope_tables(config: ModelConfig, positions: Array, dtype: jnp.dtype) -> tuple[Array, Array]:
    """`sin, cos [B, T, E]` for integer `positions [B, T]` (HF's half-split layout)."""
    freqs = positions.astype(jnp.float32)[..., None] * jnp.asarray(rope_inv_freq(config))
    emb = jnp.concatenate([freqs, freqs], axis=-1)
    return jnp.sin(emb).astype(dtype), jnp.cos(emb).astype(dtype)


def apply_rope(x: Array, sin: Array, cos: Array) -> Array:
    """Rotates `x [B, T, N, E]` by the tables `[B, T, E]`."""
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos[:, :, None, :] + rotated * sin[:, :, None, :]


@struct.dataclass
class KVCache:
    """Preallocated keys and values of every layer: `k, v [L, B, S, K, E]`."""

    k: Array
    v: Array

    @classmethod
    def init(cls, config: ModelConfig, batch: int, max_len: int, dtype: Any = None) -> KVCache:
        shape = (config.n_layers, batch, max_len, config.n_kv_heads, config.head_dim)
        dtype = dtype or _dtype(config.dtype)
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
        y = jnp.einsum(self.spec, x, kernel.astype(x.dtype))
        if self.bias:
            y = y + _param(
                self,
                "bias",
                self.axes[-self.bias_dims :],
                self.shape[-self.bias_dims :],
                nn.initializers.zeros,
            ).astype(x.dtype)
        return y


class Attention(nn.Module):
    config: ModelConfig

    @nn.compact
    def __call__(
        self, x: Array, step: Step, layer: Array, cache: KVCache | None
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
        if cache is not None:
            at = (layer, 0, step.cache_index, 0, 0)
            cache = KVCache(
                k=jax.lax.dynamic_update_slice(cache.k, k[None].astype(cache.k.dtype), at),
                v=jax.lax.dynamic_update_slice(cache.v, v[None].astype(cache.v.dtype), at),
            )
            k = jax.lax.dynamic_index_in_dim(cache.k, layer, keepdims=False).astype(dt)
            v = jax.lax.dynamic_index_in_dim(cache.v, layer, keepdims=False).astype(dt)
        out = jax.nn.dot_product_attention(
            q, k, v, mask=step.mask, scale=1.0 / math.sqrt(c.head_dim)
        )  # [B, T, H, E]
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
    def __call__(self, x: Array) -> Array:
        c = self.config
        up_in = ((c.d_model, c.d_ff), ("embed", "mlp"))
        up = Dense(c, "BTD,DF->BTF", *up_in, c.mlp_bias, name="up_proj")(x)
        if c.gated_mlp:
            gate = Dense(c, "BTD,DF->BTF", *up_in, c.mlp_bias, name="gate_proj")(x)
            hidden = jax.nn.silu(gate) * up
        else:
            hidden = jax.nn.gelu(up, approximate=True)  # GPT-2's gelu_new
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
            Norm(c, c.d_model, c.norm_eps, name="attn_norm")(x), step, layer, cache
        )
        x = site("resid_mid", x + site("attn_out", attn))
        mlp = MLP(c, name="mlp")(Norm(c, c.d_model, c.norm_eps, name="mlp_norm")(x))
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
