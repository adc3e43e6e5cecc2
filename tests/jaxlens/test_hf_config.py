"""`config.json` <-> `ModelConfig`: fields, defaults, both rope spellings, and refusals.

transformers' own config classes are the reference: what they write, we read to the same model,
and what we write, they read back to the same model.
"""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from jaxlens.config import Llama3RopeScaling, ModelConfig, UnsupportedConfigError

pytest.importorskip("transformers")
from _hf_models import VARIANTS, hf_config  # noqa: E402
from transformers import AutoConfig  # noqa: E402


def _from(arch, **overrides):
    return ModelConfig.from_hf(hf_config(arch, **overrides).to_dict())


def test_variant_fields():
    llama = _from("llama")
    assert (llama.d_model, llama.n_heads, llama.n_kv_heads, llama.head_dim, llama.d_ff) == (
        42,
        6,
        2,
        10,
        67,
    )
    assert (llama.rope_scaling, llama.tie_embeddings, llama.qkv_bias) == (None, False, False)
    assert llama.eos_token_ids == (2,) and llama.pad_token_id == 0 and llama.bos_token_id == 1
    l3 = _from("llama3_tied")
    assert l3.rope_theta == 50000.0 and l3.tie_embeddings and l3.n_kv_heads == 1
    assert l3.rope_scaling == Llama3RopeScaling(
        factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=8
    )
    bias = _from("llama_bias")
    assert bias.qkv_bias and bias.o_bias and bias.mlp_bias
    assert _from("mistral").sliding_window is None and _from("mistral_sw").sliding_window == 4
    q2 = _from("qwen2")
    assert q2.head_dim == 10 and q2.qkv_bias and not q2.o_bias and q2.eos_token_ids == (2, 3)
    q3 = _from("qwen3")
    assert q3.head_dim == 14 and q3.qk_norm and q3.norm_eps == 1e-6
    g = _from("gpt2")
    assert (g.norm, g.positions, g.gated_mlp, g.d_ff, g.max_seq_len, g.head_dim) == (
        "layer",
        "learned",
        False,
        67,
        37,
        7,
    )
    assert g.tie_embeddings and g.qkv_bias and g.o_bias and g.mlp_bias


@pytest.mark.parametrize("model_type", ["llama", "mistral", "qwen2", "qwen3", "gpt2"])
def test_missing_keys_take_transformers_defaults(model_type):
    small = (
        {"n_embd": 24, "n_head": 4, "n_layer": 2}
        if model_type == "gpt2"
        else {
            "hidden_size": 64,
            "num_attention_heads": 32,
            "num_hidden_layers": 2,
            "intermediate_size": 40,
            "vocab_size": 97,
        }
    )
    ours = ModelConfig.from_hf({"model_type": model_type, **small})
    theirs = ModelConfig.from_hf(AutoConfig.for_model(model_type, **small).to_dict())
    assert ours == theirs


@pytest.mark.parametrize("arch", list(VARIANTS))
def test_to_hf_round_trips_through_transformers(arch):
    config = _from(arch)
    assert ModelConfig.from_hf(config.to_hf()) == config
    d = config.to_hf()
    back = AutoConfig.for_model(d.pop("model_type"), **d).to_dict()
    assert ModelConfig.from_hf(back) == config


def test_legacy_rope_spelling_reads_the_same():
    fields = dict(
        factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=8
    )
    new = _from("llama", rope_parameters=dict(rope_type="llama3", rope_theta=5e5, **fields))
    base = hf_config("llama").to_dict()
    base.pop("rope_parameters")
    for key in ("type", "rope_type"):
        old = ModelConfig.from_hf(
            {**base, "rope_theta": 5e5, "rope_scaling": {key: "llama3", **fields}}
        )
        assert old == new
    plain = ModelConfig.from_hf({**base, "rope_theta": 1234.0})
    assert plain.rope_theta == 1234.0 and plain.rope_scaling is None


def test_dtype_and_nulls():
    base = hf_config("llama").to_dict()
    assert (
        ModelConfig.from_hf({**base, "dtype": None, "torch_dtype": "bfloat16"}).param_dtype
        == "bfloat16"
    )
    assert ModelConfig.from_hf({**base, "dtype": "float16"}).dtype == "float16"
    assert (
        ModelConfig.from_hf({**base, "dtype": "bfloat16"}, dtype="float32").param_dtype == "float32"
    )
    nulls = ModelConfig.from_hf({**base, "head_dim": None, "num_key_value_heads": None})
    assert nulls.head_dim == 7 and nulls.n_kv_heads == 6
    assert ModelConfig.from_hf({**base, "eos_token_id": [5, 9]}).eos_token_ids == (5, 9)
    with pytest.raises(ValueError, match="dtype"):
        ModelConfig.from_hf(base, dtype="int8")


_REFUSED = [
    ("llama", {"rope_parameters": {"rope_type": "linear", "factor": 2.0}}, "rope_type"),
    ("llama", {"rope_parameters": {"rope_type": "dynamic", "factor": 2.0}}, "rope_type"),
    ("llama", {"rope_parameters": {"rope_type": "yarn", "factor": 2.0}}, "rope_type"),
    ("llama", {"rope_scaling": {"type": "longrope"}}, "rope_type"),
    ("llama", {"partial_rotary_factor": 0.5}, "partial_rotary_factor"),
    (
        "llama",
        {"rope_parameters": {"rope_type": "default", "partial_rotary_factor": 0.25}},
        "partial_rotary_factor",
    ),
    ("llama", {"hidden_act": "gelu"}, "hidden_act"),
    ("qwen2", {"use_sliding_window": True}, "use_sliding_window"),
    (
        "qwen3",
        {"layer_types": ["full_attention", "sliding_attention", "full_attention"]},
        "layer_types",
    ),
    ("gpt2", {"scale_attn_by_inverse_layer_idx": True}, "scale_attn_by_inverse_layer_idx"),
    ("gpt2", {"activation_function": "relu"}, "activation_function"),
    ("llama", {"model_type": "falcon"}, "model_type"),
    ("llama", {"dtype": "int8"}, "dtype"),
]


@pytest.mark.parametrize("arch, change, field", _REFUSED)
def test_refuses_unimplemented_fields(arch, change, field):
    hf = {**hf_config(arch).to_dict(), **change}
    with pytest.raises(UnsupportedConfigError, match=field):
        ModelConfig.from_hf(hf)


def test_gelu_pytorch_tanh_is_gpt2_gelu():
    assert _from("gpt2", activation_function="gelu_pytorch_tanh") == _from("gpt2")


def test_to_hf_refuses_what_hf_cannot_express():
    with pytest.raises(UnsupportedConfigError, match="gpt2"):
        ModelConfig.tiny("gpt2", n_kv_heads=2).to_hf()
    with pytest.raises(UnsupportedConfigError, match="qwen2"):
        ModelConfig.tiny("qwen2", qkv_bias=False).to_hf()


@settings(max_examples=40, deadline=None)
@given(
    arch=hs.sampled_from(["llama", "mistral", "qwen2", "qwen3"]),
    kv=hs.sampled_from([1, 2, 3, 6]),
    e=hs.sampled_from([4, 6, 10]),
    theta=hs.floats(100.0, 1e6),
    window=hs.none() | hs.integers(1, 99),
    tie=hs.booleans(),
    bias=hs.booleans(),
    eos=hs.lists(hs.integers(0, 96), max_size=3),
)
def test_round_trip_property(arch, kv, e, theta, window, tie, bias, eos):
    config = ModelConfig(
        arch=arch,
        vocab_size=97,
        d_model=30,
        n_layers=2,
        n_heads=6,
        n_kv_heads=kv,
        head_dim=e,
        d_ff=50,
        rope_theta=theta,
        tie_embeddings=tie,
        qk_norm=arch == "qwen3",
        sliding_window=window if arch == "mistral" else None,
        qkv_bias=arch == "qwen2" or (bias and arch in ("llama", "qwen3")),
        o_bias=bias and arch in ("llama", "qwen3"),
        eos_token_ids=tuple(eos),
    )
    assert ModelConfig.from_hf(config.to_hf()) == config


@pytest.mark.parametrize(
    "key, value",
    [
        ("attn_logit_softcapping", 30.0),  # Gemma's soft-cap: unknown to jaxlens and LlamaConfig
        ("final_logit_softcapping", 30.0),
        ("is_encoder_decoder", True),  # known to transformers, not its default
        ("add_cross_attention", True),
    ],
)
def test_unknown_math_changing_key_is_refused(key, value):
    hf = {**hf_config("llama").to_dict(), key: value}
    with pytest.raises(UnsupportedConfigError, match=repr(key)):
        ModelConfig.from_hf(hf)


def test_every_key_is_handled_ignored_or_at_its_default():
    """The key tables cover what transformers writes for every variant, and a key outside
    them loads only when it holds transformers' default."""
    from jaxlens.hf import HANDLED, IGNORED

    for arch in VARIANTS:
        hf = hf_config(arch).to_dict()
        ModelConfig.from_hf(hf)
        default = vars(AutoConfig.for_model(hf["model_type"]))
        for key in set(hf) - HANDLED[hf["model_type"]] - IGNORED:
            assert hf[key] == default[key], (arch, key)
    base = hf_config("llama").to_dict()
    assert ModelConfig.from_hf({**base, "is_encoder_decoder": False}) == ModelConfig.from_hf(base)
