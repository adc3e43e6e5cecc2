"""The vocabulary `ModelConfig` is built from, apart from the config itself.

The supported architectures, the fields that make a GPT-2 block differ from a Llama one, Llama
3.1's rope scaling and the error for what is not implemented. The HF converter
(`jaxlens.hf.config`) builds configs from these without importing `jaxlens.config`, so the core
config and the HF boundary do not import each other.
"""

from __future__ import annotations

import dataclasses

ARCHITECTURES = ("llama", "mistral", "qwen2", "qwen3", "gpt2")
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
