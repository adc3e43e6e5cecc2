"""Param trees at no cost (`jax.eval_shape`) and random init at any size.

Parameter counts of the real presets are checked twice: against the published figures, and
against arithmetic over the preset's own HF `config.json` fields (`ModelConfig.to_hf`), which
counts what transformers would build from that file. `init_params` is checked against numpy
statistics, and its sharded draw against its unsharded one.
"""

import jax
import numpy as np
import pytest

import jaxlens
from jaxlens import ModelConfig
from jaxlens.params import count_params

PUBLISHED = {
    "llama3_2_1b": 1_235_814_400,
    "llama3_1_8b": 8_030_261_248,
    "llama3_3_70b": 70_553_706_496,
    "qwen3_4b": 4_022_468_096,
    "gpt2_small": 124_439_808,
}


def _hf_arithmetic(hf: dict) -> int:
    """Parameters of the model a HF config.json describes (Llama family or GPT-2)."""
    if hf["model_type"] == "gpt2":
        d, f, v, p = hf["n_embd"], hf["n_inner"], hf["vocab_size"], hf["n_positions"]
        block = 2 * 2 * d + (d * 3 * d + 3 * d) + (d * d + d) + (d * f + f) + (f * d + d)
        return v * d + p * d + hf["n_layer"] * block + 2 * d
    d, f, v = hf["hidden_size"], hf["intermediate_size"], hf["vocab_size"]
    q, kv = hf["num_attention_heads"] * hf["head_dim"], hf["num_key_value_heads"] * hf["head_dim"]
    block = d * q + 2 * d * kv + q * d + 3 * d * f + 2 * d
    if hf["model_type"] == "qwen3":
        block += 2 * hf["head_dim"]  # q_norm, k_norm
    head = 0 if hf["tie_word_embeddings"] else d * v
    return v * d + hf["num_hidden_layers"] * block + d + head


@pytest.mark.parametrize("preset", list(PUBLISHED))
def test_preset_parameter_counts(preset):
    config = getattr(ModelConfig, preset)()
    shapes = jaxlens.param_shapes(config)
    assert all(isinstance(s, jax.ShapeDtypeStruct) for s in jax.tree.leaves(shapes))
    assert count_params(config) == PUBLISHED[preset]
    hf = config.to_hf()
    assert _hf_arithmetic(hf) == PUBLISHED[preset]
    assert ModelConfig.from_hf(hf) == config


def test_eval_shape_of_init_params_is_free():
    config = ModelConfig.llama3_3_70b(param_dtype="bf16")
    shapes = jax.eval_shape(lambda k: jaxlens.init_params(k, config), jax.random.key(0))
    assert jax.tree.map(lambda s: (s.shape, s.dtype), shapes) == jax.tree.map(
        lambda s: (s.shape, s.dtype), jaxlens.param_shapes(config)
    )


@pytest.fixture(scope="module")
def tiny_params():
    config = ModelConfig.tiny("gpt2", vocab_size=211)
    return config, jaxlens.init_params(jax.random.key(3), config)


def test_init_statistics(tiny_params):
    config, params = tiny_params
    jaxlens.check_params(params, config)
    for path, x in jax.tree_util.tree_flatten_with_path(params)[0]:
        x, kind = np.asarray(x), path[-1].key
        if kind in ("kernel", "embedding"):
            assert abs(x.std() - 0.02) < 0.002 and abs(x.mean()) < 0.002, (path, x.std())
            if path[0].key == "layers":  # layers differ from each other
                assert not np.array_equal(x[0], x[1])
        else:
            assert np.all(x == (1.0 if kind == "scale" else 0.0)), path
    other = jaxlens.init_params(jax.random.key(4), config)
    assert not np.array_equal(other["embed"]["embedding"], params["embed"]["embedding"])


@pytest.mark.parametrize("mesh_axes, layout", [((2, 4, 1), "fsdp"), ((1, 2, 4), "tensor")])
def test_sharded_init_draws_the_same_values(tiny_params, mesh_axes, layout, monkeypatch):
    """Each device draws only its block, in chunks: the same values as the whole draw."""
    import jaxlens.params

    config, _ = tiny_params
    monkeypatch.setattr(jaxlens.params, "_CHUNK", 97)  # many chunks per leaf
    params = jaxlens.init_params(jax.random.key(3), config)
    data, fsdp, tensor = mesh_axes
    mesh = jaxlens.sharding.make_mesh(data=data, fsdp=fsdp, tensor=tensor)
    sharded = jaxlens.init_params(jax.random.key(3), config, mesh=mesh, layout=layout)
    want = jaxlens.param_shardings(config, mesh, layout=layout)
    for (path, x), s, ref in zip(
        jax.tree_util.tree_flatten_with_path(sharded)[0],
        jax.tree.leaves(want),
        jax.tree.leaves(params),
        strict=True,
    ):
        assert x.sharding == s, path
        np.testing.assert_array_equal(np.asarray(x), np.asarray(ref))
    assert any(not x.sharding.is_fully_replicated for x in jax.tree.leaves(sharded))
