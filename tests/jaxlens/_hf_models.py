"""Tiny random Hugging Face checkpoints built with `transformers` on PyTorch CPU (no downloads).

`make_hf_checkpoint(tmp_path, "llama3_tied")` writes a `save_pretrained` directory and returns
its path. Sizes are small and mostly prime (D=42, E=10, F=67, V=101) so that a swapped axis cannot
go unnoticed; every weight, norm scale and bias is redrawn at a scale where logits are O(1), so
a wrong tensor shows in the logits. `VARIANTS` names the architectures and rope/attention
variants the parity tests cover; `hf_logits` runs the HF model the way the tests compare it
(explicit `position_ids` = cumsum(mask) - 1 under left padding).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

_LLAMA = dict(
    vocab_size=101,
    hidden_size=42,
    intermediate_size=67,
    num_hidden_layers=3,
    num_attention_heads=6,
    num_key_value_heads=2,
    head_dim=10,
    max_position_embeddings=64,
    rms_norm_eps=1e-5,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=0,
    tie_word_embeddings=False,
)

# name -> (model_type, config overrides)
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "llama": ("llama", {}),
    "llama3_tied": (
        "llama",
        dict(  # Llama 3.2: llama3 rope scaling, tied embeddings (and MQA)
            num_key_value_heads=1,
            tie_word_embeddings=True,
            rope_parameters=dict(
                rope_type="llama3",
                rope_theta=50000.0,
                factor=8.0,
                low_freq_factor=1.0,
                high_freq_factor=4.0,
                original_max_position_embeddings=8,
            ),
        ),
    ),
    "llama_bias": ("llama", dict(num_key_value_heads=3, attention_bias=True, mlp_bias=True)),
    "mistral": ("mistral", dict(sliding_window=None)),
    "mistral_sw": ("mistral", dict(sliding_window=4)),
    "qwen2": (
        "qwen2",
        dict(
            hidden_size=40,
            num_attention_heads=4,
            num_key_value_heads=1,
            head_dim=None,
            eos_token_id=[2, 3],
        ),
    ),
    "qwen3": ("qwen3", dict(head_dim=14, rms_norm_eps=1e-6)),  # E != D / H = 7
    "gpt2": ("gpt2", {}),
}
_GPT2 = dict(
    vocab_size=101,
    n_embd=42,
    n_head=6,
    n_layer=3,
    n_inner=67,
    n_positions=37,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=0,
)


def hf_config(arch: str, **overrides: Any):
    """A `transformers` config for a variant name (or a plain model_type)."""
    from transformers import AutoConfig

    model_type, variant = VARIANTS.get(arch, (arch, {}))
    base = _GPT2 if model_type == "gpt2" else _LLAMA
    kwargs = {**base, **variant, **overrides}
    if kwargs.get("head_dim", 0) is None:
        del kwargs["head_dim"]
    return AutoConfig.for_model(model_type, **kwargs)


def randomize_(model, seed: int = 0) -> None:
    """Redraws every parameter (HF init leaves norms at 1 and biases at 0, hiding mix-ups)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            if "norm" in name or name.split(".")[-2].startswith("ln_"):
                value = 1.0 + 0.2 * noise if name.endswith("weight") else 0.1 * noise
            elif name.endswith("bias"):
                value = 0.1 * noise
            else:
                value = noise / np.sqrt(p.shape[-1] if p.dim() > 1 else 1.0) * 0.8
            p.copy_(value.to(p.dtype))


def make_hf_model(arch: str, *, seed: int = 0, **overrides: Any):
    """A random HF causal LM (fp32, eager attention) for a variant name or model_type."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(
        hf_config(arch, **overrides), attn_implementation="eager"
    )
    randomize_(model, seed)
    return model.eval()


def make_hf_checkpoint(tmp_path: Path | str, arch: str, *, seed: int = 0, **overrides: Any) -> Path:
    """Saves a random HF model of `arch` (variant name or model_type) under `tmp_path/arch`."""
    path = Path(tmp_path) / arch
    make_hf_model(arch, seed=seed, **overrides).save_pretrained(path)
    return path


def left_padded_batch(
    vocab: int, lengths: tuple[int, ...] = (11, 7, 2), seed: int = 0, pad: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """`tokens, mask [B, T]` with rows left-padded to the longest length."""
    rng = np.random.default_rng(seed)
    t = max(lengths)
    tokens = rng.integers(3, vocab, size=(len(lengths), t)).astype(np.int32)
    mask = np.arange(t)[None, :] >= (t - np.asarray(lengths))[:, None]
    return np.where(mask, tokens, pad).astype(np.int32), mask.astype(np.int32)


def positions(mask: np.ndarray) -> np.ndarray:
    return np.maximum(np.cumsum(mask, axis=1) - 1, 0)


def hf_logits(model, tokens: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """HF logits `[B, T, V]` (fp32 numpy) with the same position ids our forward derives."""
    import torch

    with torch.no_grad():
        out = model(
            input_ids=torch.as_tensor(tokens, dtype=torch.long),
            attention_mask=torch.as_tensor(mask, dtype=torch.long),
            position_ids=torch.as_tensor(positions(mask), dtype=torch.long),
        )
    return out.logits.float().numpy()
