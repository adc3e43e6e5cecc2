"""The HF tensor-name table: where each leaf of our params lives in a HF checkpoint.

For every leaf, `tensor_maps(config)` gives the HF tensor that holds it and how: the HF tensor
is seen as a row-major reshape `view` (q_proj's `[H*E, D]` as `[H, E, D]`), one index of a fused
axis may be taken (GPT-2's `c_attn` `[D, 3D]` seen as `[D, 3, H, E]`), and the remaining view
axes are permuted into our `[in, out]` kernel order. Stacked decoder leaves (`layers`) name their
tensor with `{i}` for the layer. `jaxlens.hf.io` reads and writes through this one table,
so loading and saving are inverses by construction; the tests check it against transformers'
own state dicts.

    ours (per layer)                  Llama family (model.)                 GPT-2 (transformer.)
    embed.embedding [V, D]            embed_tokens.weight                   wte.weight
    pos_embed.embedding [P, D]        -                                     wpe.weight
    attn_norm / mlp_norm              input_ / post_attention_layernorm     ln_1 / ln_2
    attn.{q,k,v}_proj.kernel [D,N,E]  self_attn.{q,k,v}_proj.weight [N*E,D]  attn.c_attn [D, 3D]
    attn.o_proj.kernel [H, E, D]      self_attn.o_proj.weight [D, H*E]      attn.c_proj [H*E, D]
    attn.{q,k}_norm.scale [E]         self_attn.{q,k}_norm.weight (qwen3)   -
    mlp.{gate,up}_proj.kernel [D, F]  mlp.{gate,up}_proj.weight [F, D]      mlp.c_fc [D, F] (up)
    mlp.down_proj.kernel [F, D]       mlp.down_proj.weight [D, F]           mlp.c_proj [F, D]
    final_norm                        norm                                  ln_f
    lm_head.kernel [D, V]             lm_head.weight [V, D] (absent if tied)
"""

from __future__ import annotations

import dataclasses
import math

from jaxlens.config import ModelConfig

Path_ = tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class TensorMap:
    """Where one leaf of our params lives in a HF checkpoint.

    Attributes:
      hf: HF tensor name; `{i}` stands for the layer in stacked (`layers`) leaves.
      hf_shape: shape of that HF tensor (one layer).
      view: the HF tensor seen as this row-major reshape.
      perm: our axes (after the layer axis) are `view` axes in this order (`part` axis removed).
      part: `(view axis, index)` taken from a fused tensor, or None.
    """

    hf: str
    hf_shape: tuple[int, ...]
    view: tuple[int, ...]
    perm: tuple[int, ...]
    part: tuple[int, int] | None = None

    def reduced_view(self) -> tuple[int, ...]:
        return tuple(n for a, n in enumerate(self.view) if not self.part or a != self.part[0])

    def shape(self) -> tuple[int, ...]:
        """Our per-layer shape."""
        reduced = self.reduced_view()
        return tuple(reduced[p] for p in self.perm)


def _linear(name: str, d_in: int, out: tuple[int, ...]) -> TensorMap:
    """A torch Linear `[out..., in]` as our kernel `[in, out...]`."""
    return TensorMap(
        name, (math.prod(out), d_in), out + (d_in,), (len(out),) + tuple(range(len(out)))
    )


def _same(name: str, shape: tuple[int, ...], hf_shape: tuple[int, ...] | None = None) -> TensorMap:
    """Same element order; `hf_shape` defaults to `shape` (a flat HF bias is our `[H, E]`)."""
    return TensorMap(name, hf_shape or shape, shape, tuple(range(len(shape))))


def _llama_maps(c: ModelConfig, p: str) -> dict[Path_, TensorMap]:
    d, h, k, e, f = c.d_model, c.n_heads, c.n_kv_heads, c.head_dim, c.d_ff
    lay = f"{p}layers.{{i}}."
    m: dict[Path_, TensorMap] = {
        ("embed", "embedding"): _same(f"{p}embed_tokens.weight", (c.vocab_size, d)),
        ("final_norm", "scale"): _same(f"{p}norm.weight", (d,)),
        ("layers", "attn_norm", "scale"): _same(lay + "input_layernorm.weight", (d,)),
        ("layers", "mlp_norm", "scale"): _same(lay + "post_attention_layernorm.weight", (d,)),
        ("layers", "attn", "o_proj", "kernel"): TensorMap(
            lay + "self_attn.o_proj.weight", (d, h * e), (d, h, e), (1, 2, 0)
        ),
        ("layers", "mlp", "gate_proj", "kernel"): _linear(lay + "mlp.gate_proj.weight", d, (f,)),
        ("layers", "mlp", "up_proj", "kernel"): _linear(lay + "mlp.up_proj.weight", d, (f,)),
        ("layers", "mlp", "down_proj", "kernel"): _linear(lay + "mlp.down_proj.weight", f, (d,)),
    }
    for name, heads in (("q_proj", h), ("k_proj", k), ("v_proj", k)):
        m[("layers", "attn", name, "kernel")] = _linear(
            lay + f"self_attn.{name}.weight", d, (heads, e)
        )
        if c.qkv_bias:
            m[("layers", "attn", name, "bias")] = _same(
                lay + f"self_attn.{name}.bias", (heads, e), (heads * e,)
            )
    if c.o_bias:
        m[("layers", "attn", "o_proj", "bias")] = _same(lay + "self_attn.o_proj.bias", (d,))
    if c.qk_norm:
        for name in ("q_norm", "k_norm"):
            m[("layers", "attn", name, "scale")] = _same(lay + f"self_attn.{name}.weight", (e,))
    if c.mlp_bias:
        for name, width in (("gate_proj", f), ("up_proj", f), ("down_proj", d)):
            m[("layers", "mlp", name, "bias")] = _same(lay + f"mlp.{name}.bias", (width,))
    return m


def _gpt2_maps(c: ModelConfig, p: str) -> dict[Path_, TensorMap]:
    d, h, e, f = c.d_model, c.n_heads, c.head_dim, c.d_ff
    lay = f"{p}h.{{i}}."
    m: dict[Path_, TensorMap] = {
        ("embed", "embedding"): _same(f"{p}wte.weight", (c.vocab_size, d)),
        ("pos_embed", "embedding"): _same(f"{p}wpe.weight", (c.max_seq_len, d)),
        ("layers", "attn", "o_proj", "kernel"): _same(
            lay + "attn.c_proj.weight", (h, e, d), (h * e, d)
        ),
        ("layers", "attn", "o_proj", "bias"): _same(lay + "attn.c_proj.bias", (d,)),
        ("layers", "mlp", "up_proj", "kernel"): _same(lay + "mlp.c_fc.weight", (d, f)),
        ("layers", "mlp", "up_proj", "bias"): _same(lay + "mlp.c_fc.bias", (f,)),
        ("layers", "mlp", "down_proj", "kernel"): _same(lay + "mlp.c_proj.weight", (f, d)),
        ("layers", "mlp", "down_proj", "bias"): _same(lay + "mlp.c_proj.bias", (d,)),
    }
    for ours, hf in (("final_norm", "ln_f"), ("layers", "ln_1"), ("layers", "ln_2")):
        path = (
            (ours,) if ours == "final_norm" else (ours, "attn_norm" if hf == "ln_1" else "mlp_norm")
        )
        name = f"{p}{hf}" if ours == "final_norm" else f"{lay}{hf}"
        m[path + ("scale",)] = _same(name + ".weight", (d,))
        m[path + ("bias",)] = _same(name + ".bias", (d,))
    for part, name in enumerate(("q_proj", "k_proj", "v_proj")):
        m[("layers", "attn", name, "kernel")] = TensorMap(
            lay + "attn.c_attn.weight", (d, 3 * d), (d, 3, h, e), (0, 1, 2), (1, part)
        )
        m[("layers", "attn", name, "bias")] = TensorMap(
            lay + "attn.c_attn.bias", (3 * d,), (3, h, e), (0, 1), (0, part)
        )
    return m


def tensor_maps(config: ModelConfig, prefix: str | None = None) -> dict[Path_, TensorMap]:
    """Our leaf path -> `TensorMap`; `prefix` defaults to `model.` / `transformer.`."""
    if config.arch == "gpt2":
        m = _gpt2_maps(config, "transformer." if prefix is None else prefix)
    else:
        m = _llama_maps(config, "model." if prefix is None else prefix)
    if not config.tie_embeddings:
        m[("lm_head", "kernel")] = _linear("lm_head.weight", config.d_model, (config.vocab_size,))
    return m


def leaf_shape(path: Path_, tmap: TensorMap, config: ModelConfig) -> tuple[int, ...]:
    return ((config.n_layers,) if path[0] == "layers" else ()) + tmap.shape()


def hf_names(path: Path_, tmap: TensorMap, config: ModelConfig) -> list[str]:
    if path[0] != "layers":
        return [tmap.hf]
    return [tmap.hf.format(i=i) for i in range(config.n_layers)]
