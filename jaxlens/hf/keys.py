"""Which HF `config.json` keys the converter reads, which it knowingly ignores, and the rest.

A new transformers release can add a config key that changes the math (a logit soft-cap, an
attention scale, a per-layer pattern). Such a key must never be dropped silently, so every key
of a `config.json` falls in one of three groups:

- `HANDLED[model_type]`: read by `jaxlens.hf.config` (and refused there when set to something
  not implemented);
- `IGNORED`: keys known not to change a forward pass: bookkeeping, generation defaults,
  dropout (inference has none), initialisation, legacy aliases that transformers itself no
  longer reads (`n_ctx`), a matmul split that only changes summation order (`pretraining_tp`);
- anything else is accepted only when its value equals the default of transformers' config class
  for that `model_type` (or, for keys that class no longer defines, `LEGACY_DEFAULTS`), so it
  describes the model transformers would build anyway; otherwise
  `check_keys` raises `UnsupportedConfigError` naming the key, its value and that default.

The transformers config class is consulted (imported lazily) only when a key falls in the third
group, so a known config loads without importing transformers.
"""

from __future__ import annotations

import functools
from typing import Any

from jaxlens.config_fields import UnsupportedConfigError

_SPECIAL = ("bos_token_id", "eos_token_id", "pad_token_id", "tie_word_embeddings")
_LLAMA_COMMON = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "hidden_act",
    "max_position_embeddings",
    "rms_norm_eps",
    "rope_theta",
    "rope_scaling",
    "rope_parameters",
    "partial_rotary_factor",
) + _SPECIAL
_QWEN_WINDOW = ("use_sliding_window", "sliding_window", "layer_types", "max_window_layers")
HANDLED: dict[str, frozenset[str]] = {
    "llama": frozenset(_LLAMA_COMMON + ("attention_bias", "mlp_bias")),
    "mistral": frozenset(_LLAMA_COMMON + ("sliding_window", "layer_types")),
    "qwen2": frozenset(_LLAMA_COMMON + _QWEN_WINDOW),
    "qwen3": frozenset(_LLAMA_COMMON + _QWEN_WINDOW + ("attention_bias",)),
    "gpt2": frozenset(
        (
            "vocab_size",
            "n_embd",
            "n_head",
            "n_layer",
            "n_inner",
            "n_positions",
            "layer_norm_epsilon",
            "activation_function",
            "scale_attn_weights",
            "scale_attn_by_inverse_layer_idx",
            "add_cross_attention",
        )
        + _SPECIAL
    ),
}
IGNORED: frozenset[str] = frozenset(
    # bookkeeping and output switches
    (
        "model_type",
        "architectures",
        "transformers_version",
        "_name_or_path",
        "name_or_path",
        "dtype",  # read by the converter as the param dtype, not as math
        "torch_dtype",
        "use_bfloat16",
        "id2label",
        "label2id",
        "num_labels",
        "problem_type",
        "finetuning_task",
        "tokenizer_class",
        "prefix",
        "task_specific_params",
        "sep_token_id",
        "decoder_start_token_id",
        "output_attentions",
        "output_hidden_states",
        "return_dict",
        "use_return_dict",
        "torchscript",
        "tf_legacy_loss",
        "pruned_heads",
        "use_cache",
        "chunk_size_feed_forward",
        "_attn_implementation",
        "_attn_implementation_autoset",
        "attn_implementation",
        "gradient_checkpointing",
        "initializer_range",
        "pretraining_tp",
        "n_ctx",
        "reorder_and_upcast_attn",  # GPT-2 upcasts softmax to fp32; ours always is fp32
    )
    # dropout (inference runs without it) and GPT-2's sequence-classification head
    + (
        "attention_dropout",
        "hidden_dropout",
        "resid_pdrop",
        "embd_pdrop",
        "attn_pdrop",
        "summary_type",
        "summary_use_proj",
        "summary_activation",
        "summary_proj_to_labels",
        "summary_first_dropout",
    )
    # generation defaults that older transformers kept in the model config
    + (
        "max_length",
        "min_length",
        "do_sample",
        "early_stopping",
        "num_beams",
        "num_beam_groups",
        "diversity_penalty",
        "temperature",
        "top_k",
        "top_p",
        "typical_p",
        "repetition_penalty",
        "length_penalty",
        "no_repeat_ngram_size",
        "encoder_no_repeat_ngram_size",
        "bad_words_ids",
        "num_return_sequences",
        "output_scores",
        "return_dict_in_generate",
        "forced_bos_token_id",
        "forced_eos_token_id",
        "remove_invalid_values",
        "exponential_decay_length_penalty",
        "suppress_tokens",
        "begin_suppress_tokens",
    )
)
# Defaults of keys that older transformers configs carried and 5.x classes no longer define;
# each changes the math when set otherwise (an encoder-decoder or cross-attention model).
LEGACY_DEFAULTS: dict[str, Any] = {
    "is_encoder_decoder": False,
    "is_decoder": False,
    "add_cross_attention": False,
    "cross_attention_hidden_size": None,
    "tie_encoder_decoder": False,
}
_MISSING = object()


@functools.lru_cache(maxsize=8)
def _transformers_defaults(model_type: str) -> dict[str, Any]:
    """The attributes of transformers' default config for `model_type` (import on demand)."""
    from transformers import AutoConfig

    config = AutoConfig.for_model(model_type)
    return {**LEGACY_DEFAULTS, **{k: v for k, v in vars(config).items() if not k.startswith("_")}}


def check_keys(hf: dict[str, Any], model_type: str) -> None:
    """Raises `UnsupportedConfigError` for a key outside `HANDLED`/`IGNORED` whose value is not
    transformers' default for `model_type`."""
    known = HANDLED[model_type] | IGNORED
    for key in sorted(k for k in hf if k not in known):
        default = _transformers_defaults(model_type).get(key, _MISSING)
        if default is _MISSING:
            raise UnsupportedConfigError(
                f"config.json field {key!r}={hf[key]!r} is not known to jaxlens nor to "
                f"transformers' {model_type} config: it may change the model's math, so it is "
                "not ignored (remove it if it does not)"
            )
        if hf[key] != default:
            raise UnsupportedConfigError(
                f"config.json field {key!r}={hf[key]!r} is not supported: jaxlens implements "
                f"only transformers' default {default!r} for {model_type}"
            )
