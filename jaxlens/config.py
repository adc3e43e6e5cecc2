"""Model configuration: one frozen, hashable dataclass for every supported architecture.

`ModelConfig` is static under `jit`. `ModelConfig.from_hf` reads a Hugging Face `config.json`
dict for `llama` (2, 3, 3.1/3.3 `llama3` rope scaling, 3.2 tied embeddings), `mistral`, `qwen2`,
`qwen3` and `gpt2`. Any field that would change the math and is not implemented raises
`UnsupportedConfigError` naming it: nothing is silently ignored.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

ARCHITECTURES = ("llama", "mistral", "qwen2", "qwen3", "gpt2")
DTYPES = ("float32", "bfloat16", "float16")
# What makes a GPT-2 block differ from a Llama one (shared by presets and the HF converter).
GPT2_STRUCTURE = dict(
    norm="layer",
    activation="gelu_new",
    gated_mlp=False,
    positions="learned",
    qkv_bias=True,
    o_bias=True,
    mlp_bias=True,
)


class UnsupportedConfigError(ValueError):
    """A config field (or value) that changes the model's math and is not implemented."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Llama3RopeScaling:
    """Llama 3.1's frequency-dependent rope rescaling (`rope_type: llama3`)."""

    factor: float
    low_freq_factor: float
    high_freq_factor: float
    original_max_position_embeddings: int


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """A decoder-only transformer of the Llama family, or GPT-2.

    Attributes:
      arch: the HF `model_type` this config came from (one of `ARCHITECTURES`).
      vocab_size: V, rows of the embedding table.
      d_model: D, width of the residual stream.
      n_layers: L, number of decoder layers (stacked on a leading axis, run under one scan).
      n_heads: H, query heads.
      n_kv_heads: K, key/value heads (GQA when K < H, MQA when K == 1); divides H.
      head_dim: E, per-head width (Qwen3 lets it differ from D / H).
      d_ff: F, hidden width of the MLP.
      max_seq_len: longest position the model supports (GPT-2's learned table size).
      norm: `"rms"` (Llama family) or `"layer"` (GPT-2).
      norm_eps: epsilon inside the norm.
      activation: `"silu"` (gated MLP of the Llama family) or `"gelu_new"` (GPT-2's tanh GELU).
      gated_mlp: `gate_proj * act(up)` (Llama family) versus a plain two-layer MLP (GPT-2).
      positions: `"rope"` or `"learned"` (GPT-2).
      rope_theta: base of the rotary frequencies.
      rope_scaling: `None` or `Llama3RopeScaling`.
      sliding_window: `None`, or every layer attends only to the last `sliding_window` keys.
      qkv_bias / o_bias / mlp_bias: bias terms on those projections.
      qk_norm: RMSNorm over the head dim of queries and keys before rope (Qwen3).
      tie_embeddings: the LM head reuses the embedding table.
      param_dtype: storage dtype of the weights.
      dtype: compute dtype of the activations (norm statistics and softmax stay fp32).
      bos_token_id / eos_token_ids / pad_token_id: special tokens from the HF config.
    """

    arch: Literal["llama", "mistral", "qwen2", "qwen3", "gpt2"] = "llama"
    vocab_size: int
    d_model: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    d_ff: int
    max_seq_len: int = 4096
    norm: Literal["rms", "layer"] = "rms"
    norm_eps: float = 1e-5
    activation: Literal["silu", "gelu_new"] = "silu"
    gated_mlp: bool = True
    positions: Literal["rope", "learned"] = "rope"
    rope_theta: float = 10000.0
    rope_scaling: Llama3RopeScaling | None = None
    sliding_window: int | None = None
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    qk_norm: bool = False
    tie_embeddings: bool = False
    param_dtype: str = "float32"
    dtype: str = "float32"
    bos_token_id: int | None = None
    eos_token_ids: tuple[int, ...] = ()
    pad_token_id: int | None = None

    def __post_init__(self):
        if self.arch not in ARCHITECTURES:
            raise UnsupportedConfigError(f"arch={self.arch!r}: expected one of {ARCHITECTURES}")
        for name in (
            "vocab_size",
            "d_model",
            "n_layers",
            "n_heads",
            "n_kv_heads",
            "head_dim",
            "d_ff",
            "max_seq_len",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"ModelConfig.{name}={value!r}: expected a positive int")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(
                f"ModelConfig: n_heads={self.n_heads} is not a multiple of "
                f"n_kv_heads={self.n_kv_heads}"
            )
        for name, allowed in (
            ("norm", ("rms", "layer")),
            ("activation", ("silu", "gelu_new")),
            ("positions", ("rope", "learned")),
            ("param_dtype", DTYPES),
            ("dtype", DTYPES),
        ):
            if getattr(self, name) not in allowed:
                raise UnsupportedConfigError(
                    f"ModelConfig.{name}={getattr(self, name)!r}: expected one of {allowed}"
                )
        if self.sliding_window is not None and self.sliding_window <= 0:
            raise ValueError(f"ModelConfig.sliding_window={self.sliding_window}: expected > 0")
        if self.qk_norm and self.norm != "rms":
            raise UnsupportedConfigError("ModelConfig.qk_norm needs norm='rms'")

    @property
    def q_per_kv(self) -> int:
        """Query heads sharing one key/value head (G in `H = K * G`)."""
        return self.n_heads // self.n_kv_heads

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes)

    @classmethod
    def tiny(cls, arch: str = "llama", **overrides: Any) -> ModelConfig:
        """A small random-init config for tests and examples (prime sizes, GQA)."""
        base: dict[str, Any] = dict(
            arch=arch,
            vocab_size=101,
            d_model=40,
            n_layers=3,
            n_heads=4,
            n_kv_heads=2,
            head_dim=10,
            d_ff=56,
            max_seq_len=128,
            eos_token_ids=(2,),
            bos_token_id=1,
            pad_token_id=0,
        )
        if arch == "gpt2":
            base.update(n_kv_heads=4, tie_embeddings=True, **GPT2_STRUCTURE)
        elif arch == "qwen2":
            base.update(qkv_bias=True)
        elif arch == "qwen3":
            base.update(qk_norm=True, head_dim=12, norm_eps=1e-6)
        return cls(**{**base, **overrides})

    @classmethod
    def from_hf(cls, hf: dict[str, Any], *, dtype: str | None = None) -> ModelConfig:
        """Builds a config from a HF `config.json` dict; refuses what it does not implement."""
        from jaxlens.hf_config import config_from_hf

        return config_from_hf(cls, hf, dtype=dtype)

    def to_hf(self) -> dict[str, Any]:
        """The HF `config.json` dict that `transformers` loads back as the same model."""
        from jaxlens.hf_config import config_to_hf

        return config_to_hf(self)
