"""Model configuration: one frozen, hashable dataclass for every supported architecture.

`ModelConfig` is static under `jit`. `ModelConfig.from_hf` reads a Hugging Face `config.json`
dict for `llama` (2, 3, 3.1/3.3 `llama3` rope scaling, 3.2 tied embeddings), `mistral`, `qwen2`,
`qwen3` and `gpt2`. Any field that would change the math and is not implemented raises
`UnsupportedConfigError` naming it: nothing is silently ignored.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from jaxlens.config_fields import (  # noqa: F401  (re-exported: the config's vocabulary)
    ARCHITECTURES,
    GPT2_STRUCTURE,
    Llama3RopeScaling,
    UnsupportedConfigError,
)
from jaxlens.dtypes import canonical_dtype


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
      param_dtype: storage dtype of the weights; any spelling `canonical_dtype` takes
        (`"bf16"`, `np.float32`, `jnp.bfloat16`), stored as `"float32"`/`"bfloat16"`/`"float16"`.
      dtype: compute dtype of the activations (norm statistics and softmax stay fp32); spelled
        like `param_dtype`.
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
    param_dtype: Any = "float32"
    dtype: Any = "float32"
    bos_token_id: int | None = None
    eos_token_ids: tuple[int, ...] = ()
    pad_token_id: int | None = None

    def __post_init__(self):
        for name in ("param_dtype", "dtype"):
            value = canonical_dtype(getattr(self, name), name=f"ModelConfig.{name}")
            object.__setattr__(self, name, value)
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

    # Presets: the published architectures, random-init sizes only (weights come from load_hf).

    @classmethod
    def llama3_2_1b(cls, **overrides: Any) -> ModelConfig:
        """Llama 3.2 1B: 1,235,814,400 params (tied embeddings, llama3 rope x32)."""
        return cls._llama3(
            dict(d_model=2048, n_layers=16, n_heads=32, head_dim=64, d_ff=8192),
            factor=32.0,
            tie_embeddings=True,
            **overrides,
        )

    @classmethod
    def llama3_1_8b(cls, **overrides: Any) -> ModelConfig:
        """Llama 3.1 8B: 8,030,261,248 params."""
        return cls._llama3(
            dict(d_model=4096, n_layers=32, n_heads=32, head_dim=128, d_ff=14336), **overrides
        )

    @classmethod
    def llama3_3_70b(cls, **overrides: Any) -> ModelConfig:
        """Llama 3.3 70B: 70,553,706,496 params."""
        return cls._llama3(
            dict(d_model=8192, n_layers=80, n_heads=64, head_dim=128, d_ff=28672), **overrides
        )

    @classmethod
    def _llama3(
        cls, sizes: dict[str, int], *, factor: float = 8.0, **overrides: Any
    ) -> ModelConfig:
        base: dict[str, Any] = dict(
            arch="llama",
            vocab_size=128256,
            n_kv_heads=8,
            max_seq_len=131072,
            rope_theta=500000.0,
            rope_scaling=Llama3RopeScaling(
                factor=factor,
                low_freq_factor=1.0,
                high_freq_factor=4.0,
                original_max_position_embeddings=8192,
            ),
            bos_token_id=128000,
            eos_token_ids=(128001, 128008, 128009),
            **sizes,
        )
        return cls(**{**base, **overrides})

    @classmethod
    def qwen3_4b(cls, **overrides: Any) -> ModelConfig:
        """Qwen3 4B: 4,022,468,096 params (q/k norm, head_dim 128 != d_model / n_heads)."""
        base: dict[str, Any] = dict(
            arch="qwen3",
            vocab_size=151936,
            d_model=2560,
            n_layers=36,
            n_heads=32,
            n_kv_heads=8,
            head_dim=128,
            d_ff=9728,
            max_seq_len=40960,
            norm_eps=1e-6,
            rope_theta=1000000.0,
            qk_norm=True,
            tie_embeddings=True,
            bos_token_id=151643,
            eos_token_ids=(151645,),
        )
        return cls(**{**base, **overrides})

    @classmethod
    def gpt2_small(cls, **overrides: Any) -> ModelConfig:
        """GPT-2 small: 124,439,808 params."""
        base: dict[str, Any] = dict(
            arch="gpt2",
            vocab_size=50257,
            d_model=768,
            n_layers=12,
            n_heads=12,
            n_kv_heads=12,
            head_dim=64,
            d_ff=3072,
            max_seq_len=1024,
            tie_embeddings=True,
            bos_token_id=50256,
            eos_token_ids=(50256,),
            **GPT2_STRUCTURE,
        )
        return cls(**{**base, **overrides})

    @classmethod
    def from_hf(cls, hf: dict[str, Any], *, dtype: Any = None) -> ModelConfig:
        """Builds a config from a HF `config.json` dict; refuses what it does not implement.

        The converter lives in `jaxlens.hf.config`, imported on first use so that importing the
        config does not load the HF boundary.
        """
        from jaxlens.hf.config import config_from_hf

        return config_from_hf(cls, hf, dtype=dtype)

    def to_hf(self) -> dict[str, Any]:
        """The HF `config.json` dict that `transformers` loads back as the same model."""
        from jaxlens.hf.config import config_to_hf

        return config_to_hf(self)
