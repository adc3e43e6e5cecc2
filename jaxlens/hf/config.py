"""Hugging Face `config.json` <-> `ModelConfig`.

`config_from_hf` reads the fields of the five supported `model_type`s (every other key is
either knowingly ignored or must hold transformers' default: `jaxlens.hf.keys`) and refuses, with
`UnsupportedConfigError` naming the field and its value, every setting that would change the math
and is not implemented: rope types other than `default`/`llama3`, partial rotary embeddings,
Qwen sliding-window layers, GPT-2's per-layer attention scaling, other activations, unknown
architectures. Missing keys take the default of the `transformers` config class (5.x), so a
`config.json` means the same model here as there.

Both rope spellings are read: transformers 5.x writes `rope_parameters` (`rope_type`,
`rope_theta`, llama3 fields); older files carry `rope_theta` next to `rope_scaling` (`type` or
`rope_type`). As in transformers, a non-null legacy `rope_scaling` wins over `rope_parameters`.

`config_to_hf` writes the inverse dict (both rope spellings, so transformers 4.45+ and 5.x read
it), which `transformers.AutoConfig.for_model(**d)` turns back into the same model.
"""

from __future__ import annotations

from typing import Any

from jaxlens.config_fields import GPT2_STRUCTURE, Llama3RopeScaling, UnsupportedConfigError
from jaxlens.dtypes import DtypeError, canonical_dtype
from jaxlens.hf.keys import check_keys

# A `jaxlens.ModelConfig` (`jaxlens.config` imports this module, so it is not imported back).
ModelConfig = Any

_LLAMA_FAMILY = ("llama", "mistral", "qwen2", "qwen3")
_ARCHITECTURES = {
    "llama": "LlamaForCausalLM",
    "mistral": "MistralForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "qwen3": "Qwen3ForCausalLM",
    "gpt2": "GPT2LMHeadModel",
}
# Defaults of the transformers 5.x config classes for keys a config.json may omit (an explicit
# null head_dim / num_key_value_heads means D / H and H, as in their __post_init__).
_COMMON = dict(rms_norm_eps=1e-6, tie_word_embeddings=False, bos_token_id=None, eos_token_id=None)
_DEFAULTS: dict[str, dict[str, Any]] = {
    "llama": {
        **_COMMON,
        "max_position_embeddings": 2048,
        "num_key_value_heads": None,
        "bos_token_id": 1,
        "eos_token_id": 2,
    },
    "mistral": {
        **_COMMON,
        "max_position_embeddings": 131072,
        "num_key_value_heads": 8,
        "sliding_window": 4096,
        "bos_token_id": 1,
        "eos_token_id": 2,
    },
    "qwen2": {**_COMMON, "max_position_embeddings": 32768, "num_key_value_heads": 32},
    "qwen3": {
        **_COMMON,
        "max_position_embeddings": 32768,
        "num_key_value_heads": 32,
        "head_dim": 128,
    },
    "gpt2": {"bos_token_id": 50256, "eos_token_id": 50256},
}
_GELU_TANH = ("gelu_new", "gelu_pytorch_tanh")


def _refuse(field: str, value: Any, expected: str) -> UnsupportedConfigError:
    return UnsupportedConfigError(
        f"config.json field {field!r}={value!r} is not supported: expected {expected}"
    )


def _require(hf: dict[str, Any], key: str) -> Any:
    if hf.get(key) is None:
        raise ValueError(
            f"config.json: required field {key!r} is missing (model_type={hf.get('model_type')!r})"
        )
    return hf[key]


def _param_dtype(hf: dict[str, Any], dtype: Any) -> str:
    if dtype is not None:
        return canonical_dtype(dtype)
    raw = hf.get("dtype") or hf.get("torch_dtype")
    if raw is None:
        return "float32"
    try:
        return canonical_dtype(raw)
    except DtypeError:
        raise _refuse("dtype", raw, "float32, bfloat16 or float16") from None


def _special_tokens(hf: dict[str, Any]) -> dict[str, Any]:
    eos = hf.get("eos_token_id")
    eos_ids = () if eos is None else (eos,) if isinstance(eos, int) else tuple(int(e) for e in eos)
    return dict(
        bos_token_id=hf.get("bos_token_id"),
        eos_token_ids=eos_ids,
        pad_token_id=hf.get("pad_token_id"),
    )


def _rope(hf: dict[str, Any]) -> tuple[float, Llama3RopeScaling | None]:
    """(rope_theta, llama3 scaling or None) from either rope spelling."""
    params = dict(hf.get("rope_scaling") or hf.get("rope_parameters") or {})
    if any(isinstance(v, dict) for v in params.values()):
        raise _refuse(
            "rope_parameters", params, "one flat dict (per-layer-type rope is not implemented)"
        )
    theta = params.get("rope_theta", hf.get("rope_theta", 10000.0))
    rope_type = params.get("rope_type", params.get("type", "default"))
    factor = params.get("partial_rotary_factor", hf.get("partial_rotary_factor", 1.0))
    if factor is not None and float(factor) != 1.0:
        raise _refuse("partial_rotary_factor", factor, "1.0 (rotary over the whole head)")
    if rope_type == "default":
        return float(theta), None
    if rope_type != "llama3":
        raise _refuse("rope_type", rope_type, "'default' or 'llama3'")
    try:
        scaling = Llama3RopeScaling(
            factor=float(params["factor"]),
            low_freq_factor=float(params["low_freq_factor"]),
            high_freq_factor=float(params["high_freq_factor"]),
            original_max_position_embeddings=int(
                params.get(
                    "original_max_position_embeddings", hf.get("max_position_embeddings", 2048)
                )
            ),
        )
    except KeyError as e:
        raise ValueError(f"config.json: llama3 rope scaling needs field {e.args[0]!r}") from None
    return float(theta), scaling


def _check_full_attention(hf: dict[str, Any]) -> None:
    if hf.get("use_sliding_window"):
        raise _refuse(
            "use_sliding_window", True, "false (Qwen sliding-window layers are not implemented)"
        )
    for i, kind in enumerate(hf.get("layer_types") or ()):
        if kind != "full_attention":
            raise _refuse(f"layer_types[{i}]", kind, "'full_attention'")


def _llama_family(hf: dict[str, Any], arch: str) -> dict[str, Any]:
    act = hf.get("hidden_act") or "silu"
    if act != "silu":
        raise _refuse("hidden_act", act, "'silu'")
    d_model, n_heads = int(_require(hf, "hidden_size")), int(_require(hf, "num_attention_heads"))
    theta, scaling = _rope(hf)
    out = dict(
        vocab_size=int(_require(hf, "vocab_size")),
        d_model=d_model,
        n_layers=int(_require(hf, "num_hidden_layers")),
        n_heads=n_heads,
        n_kv_heads=int(hf.get("num_key_value_heads") or n_heads),
        head_dim=int(hf.get("head_dim") or d_model // n_heads),
        d_ff=int(_require(hf, "intermediate_size")),
        max_seq_len=int(hf["max_position_embeddings"]),
        norm_eps=float(hf["rms_norm_eps"]),
        rope_theta=theta,
        rope_scaling=scaling,
        tie_embeddings=bool(hf["tie_word_embeddings"]),
    )
    bias = bool(hf.get("attention_bias", False))
    if arch == "llama":
        out.update(qkv_bias=bias, o_bias=bias, mlp_bias=bool(hf.get("mlp_bias", False)))
    elif arch == "mistral":
        if hf.get("layer_types"):
            raise _refuse(
                "layer_types",
                hf["layer_types"],
                "absent for mistral (alternating attention is not implemented)",
            )
        window = hf.get("sliding_window")
        out.update(sliding_window=None if window is None else int(window))
    elif arch == "qwen2":
        _check_full_attention(hf)
        out.update(qkv_bias=True)
    else:  # qwen3
        _check_full_attention(hf)
        out.update(qk_norm=True, qkv_bias=bias, o_bias=bias)
    return out


def _gpt2(hf: dict[str, Any]) -> dict[str, Any]:
    act = hf.get("activation_function", "gelu_new")
    if act not in _GELU_TANH:
        raise _refuse("activation_function", act, f"one of {_GELU_TANH}")
    for field, ok in (
        ("scale_attn_by_inverse_layer_idx", False),
        ("scale_attn_weights", True),
        ("add_cross_attention", False),
    ):
        if bool(hf.get(field, ok)) != ok:
            raise _refuse(field, hf[field], repr(ok).lower())
    d_model, n_heads = int(hf.get("n_embd", 768)), int(hf.get("n_head", 12))
    if d_model % n_heads:
        raise ValueError(f"config.json: n_embd={d_model} is not a multiple of n_head={n_heads}")
    return dict(
        vocab_size=int(hf.get("vocab_size", 50257)),
        d_model=d_model,
        n_layers=int(hf.get("n_layer", 12)),
        n_heads=n_heads,
        n_kv_heads=n_heads,
        head_dim=d_model // n_heads,
        d_ff=int(hf.get("n_inner") or 4 * d_model),
        max_seq_len=int(hf.get("n_positions", 1024)),
        norm_eps=float(hf.get("layer_norm_epsilon", 1e-5)),
        **GPT2_STRUCTURE,
        tie_embeddings=bool(hf.get("tie_word_embeddings", True)),
    )


def config_from_hf(cls: type[ModelConfig], hf: dict[str, Any], dtype: Any = None) -> ModelConfig:
    """Builds `cls` from a HF `config.json` dict.

    Args:
      cls: `ModelConfig` (or a subclass).
      hf: the parsed `config.json`.
      dtype: param dtype in any spelling `jaxlens.canonical_dtype` takes; `None` takes the
        file's `dtype`/`torch_dtype` (float32 if absent).

    Raises:
      UnsupportedConfigError: a field whose value changes the math and is not implemented,
        or a key outside `jaxlens.hf.keys` that differs from transformers' default.
      DtypeError: `dtype` is not a float32/bfloat16/float16 spelling.
      ValueError: a required field is missing or inconsistent.
    """
    if not isinstance(hf, dict):
        raise ValueError(f"config.json: expected a JSON object, got {type(hf).__name__}")
    arch = hf.get("model_type")
    if arch not in _ARCHITECTURES:
        raise _refuse("model_type", arch, f"one of {tuple(_ARCHITECTURES)}")
    check_keys(hf, arch)
    hf = {**_DEFAULTS[arch], **hf}  # an explicit null (e.g. sliding_window) is kept
    fields = _gpt2(hf) if arch == "gpt2" else _llama_family(hf, arch)
    name = _param_dtype(hf, dtype)
    return cls(arch=arch, **fields, param_dtype=name, dtype=name, **_special_tokens(hf))


def _rope_to_hf(config: ModelConfig) -> dict[str, Any]:
    params: dict[str, Any] = {"rope_type": "default", "rope_theta": config.rope_theta}
    out: dict[str, Any] = {"rope_theta": config.rope_theta, "rope_parameters": params}
    if config.rope_scaling is not None:
        s = config.rope_scaling
        scaling = dict(
            rope_type="llama3",
            factor=s.factor,
            low_freq_factor=s.low_freq_factor,
            high_freq_factor=s.high_freq_factor,
            original_max_position_embeddings=s.original_max_position_embeddings,
        )
        params.update(scaling)
        out["rope_scaling"] = {**scaling, "rope_theta": config.rope_theta}
    return out


def _check_expressible(config: ModelConfig) -> None:
    """Refuses configs that the HF class of `config.arch` cannot represent."""
    arch, problems = config.arch, []
    if arch == "gpt2":
        if (
            config.n_kv_heads != config.n_heads
            or config.head_dim * config.n_heads != config.d_model
        ):
            problems.append("gpt2 needs n_kv_heads == n_heads and head_dim * n_heads == d_model")
        if (config.norm, config.positions, config.gated_mlp) != ("layer", "learned", False):
            problems.append("gpt2 needs norm='layer', positions='learned', gated_mlp=False")
        if not (config.qkv_bias and config.o_bias and config.mlp_bias) or config.qk_norm:
            problems.append("gpt2 needs all biases and no qk_norm")
    else:
        if (config.norm, config.positions, config.gated_mlp, config.activation) != (
            "rms",
            "rope",
            True,
            "silu",
        ):
            problems.append(f"{arch} needs norm='rms', positions='rope', gated_mlp, silu")
        if config.qk_norm != (arch == "qwen3"):
            problems.append(f"{arch}: qk_norm={config.qk_norm} does not match the architecture")
        if arch == "qwen2" and (not config.qkv_bias or config.o_bias):
            problems.append("qwen2 has q/k/v bias and no o bias")
        if arch in ("mistral", "qwen2", "qwen3") and config.mlp_bias:
            problems.append(f"{arch} has no MLP bias")
        if arch in ("mistral",) and (config.qkv_bias or config.o_bias):
            problems.append("mistral has no attention bias")
        if arch in ("llama", "qwen3") and config.qkv_bias != config.o_bias:
            problems.append(f"{arch}: attention_bias sets qkv_bias and o_bias together")
        if arch != "mistral" and config.sliding_window is not None:
            problems.append(f"{arch}: sliding_window is only written for mistral")
    if problems:
        raise UnsupportedConfigError(
            f"ModelConfig(arch={arch!r}) has no HF config.json: " + "; ".join(problems)
        )


def config_to_hf(config: ModelConfig) -> dict[str, Any]:
    """The `config.json` dict that transformers loads as the same model."""
    _check_expressible(config)
    common: dict[str, Any] = dict(
        model_type=config.arch,
        architectures=[_ARCHITECTURES[config.arch]],
        vocab_size=config.vocab_size,
        tie_word_embeddings=config.tie_embeddings,
        bos_token_id=config.bos_token_id,
        pad_token_id=config.pad_token_id,
        eos_token_id=(
            config.eos_token_ids[0]
            if len(config.eos_token_ids) == 1
            else list(config.eos_token_ids) or None
        ),
        dtype=config.param_dtype,
    )
    if config.arch == "gpt2":
        return {
            **common,
            "n_embd": config.d_model,
            "n_layer": config.n_layers,
            "n_head": config.n_heads,
            "n_inner": config.d_ff,
            "n_positions": config.max_seq_len,
            "layer_norm_epsilon": config.norm_eps,
            "activation_function": "gelu_new",
            "scale_attn_weights": True,
            "scale_attn_by_inverse_layer_idx": False,
        }
    out = {
        **common,
        "hidden_size": config.d_model,
        "num_hidden_layers": config.n_layers,
        "num_attention_heads": config.n_heads,
        "num_key_value_heads": config.n_kv_heads,
        "head_dim": config.head_dim,
        "intermediate_size": config.d_ff,
        "hidden_act": "silu",
        "max_position_embeddings": config.max_seq_len,
        "rms_norm_eps": config.norm_eps,
        **_rope_to_hf(config),
    }
    if config.arch in ("llama", "qwen3"):
        out["attention_bias"] = config.qkv_bias
    if config.arch == "llama":
        out["mlp_bias"] = config.mlp_bias
    if config.arch == "mistral":
        out["sliding_window"] = config.sliding_window
    if config.arch in ("qwen2", "qwen3"):
        out.update(use_sliding_window=False, sliding_window=None)
    return out
