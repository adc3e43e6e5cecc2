"""Params over 8 simulated devices: rules table, sharded loading, one compiled forward vs HF."""

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from jaxlens import load_hf
from jaxlens.config import ModelConfig
from jaxlens.model import forward
from jaxlens.params import param_shardings, shard_params
from jaxlens.sharding import (
    MeshError,
    batch_sharding,
    logical_to_spec,
    make_mesh,
    put_batch,
)

torch = pytest.importorskip("torch")
from _hf_models import hf_logits, left_padded_batch, make_hf_model  # noqa: E402

# Divisible by 4 where sharding should happen (D, H, F, V); K=2 must fall back to replication.
SIZES = dict(
    hidden_size=44,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=10,
    intermediate_size=68,
    vocab_size=104,
)
MESHES = {"fsdp": dict(data=2, fsdp=4), "tensor": dict(data=2, tensor=4)}

pytestmark = pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 (simulated) devices")


@pytest.fixture(scope="module")
def hf_run(tmp_path_factory):
    model = make_hf_model("llama_bias", **SIZES)
    path = tmp_path_factory.mktemp("sharded") / "llama"
    model.save_pretrained(path)
    batch = left_padded_batch(104, lengths=(9, 4, 9, 1), seed=1)
    return path, batch, hf_logits(model, *batch)


def test_rules_table():
    fsdp, tensor = make_mesh(**MESHES["fsdp"]), make_mesh(**MESHES["tensor"])
    q = ("layers", "embed", "heads", "head_dim")
    assert logical_to_spec(q, (3, 44, 4, 10), fsdp, "fsdp") == P(None, "fsdp", None, None)
    assert logical_to_spec(q, (3, 44, 4, 10), tensor, "tensor") == P(None, None, "tensor", None)
    assert logical_to_spec(q, (3, 42, 4, 10), fsdp, "fsdp") == P(None, None, None, None)
    kv = ("layers", "embed", "kv_heads", "head_dim")
    assert logical_to_spec(kv, (3, 44, 2, 10), tensor, "tensor") == P(None, None, None, None)
    assert logical_to_spec(("vocab", "embed"), (104, 44), tensor, "tensor") == P("tensor", None)
    both = make_mesh(data=1, fsdp=2, tensor=4)
    assert logical_to_spec(("embed", "vocab"), (44, 104), both, "tensor") == P("fsdp", "tensor")
    assert logical_to_spec(("layers", "norm"), (3, 44), both, "tensor") == P(None, None)
    assert batch_sharding(fsdp, 8).spec == P(("data", "fsdp"), None)
    assert batch_sharding(fsdp, 6).spec == P(("data",), None)
    with pytest.raises(MeshError, match="layout"):
        logical_to_spec(q, (3, 44, 4, 10), fsdp, "pipeline")
    with pytest.raises(MeshError, match="8 devices"):
        make_mesh(data=3, fsdp=2)


@pytest.mark.parametrize("layout", list(MESHES))
def test_sharded_load_and_forward_match_hf(layout, hf_run):
    path, (tokens, mask), want = hf_run
    mesh = make_mesh(**MESHES[layout])
    config, params = load_hf(path, mesh=mesh, layout=layout)
    shardings = param_shardings(config, mesh, layout)
    for x, s in zip(jax.tree.leaves(params), jax.tree.leaves(shardings), strict=True):
        assert x.sharding.is_equivalent_to(s, x.ndim)
    q = params["layers"]["attn"]["q_proj"]["kernel"]  # [L, D, H, E]
    k = params["layers"]["attn"]["k_proj"]["kernel"]  # [L, D, K, E], K=2 < 4: replicated
    if layout == "fsdp":
        assert q.addressable_shards[0].data.shape == (3, 11, 4, 10)
    else:
        assert q.addressable_shards[0].data.shape == (3, 44, 1, 10)
        assert params["embed"]["embedding"].addressable_shards[0].data.shape == (26, 44)
        assert k.addressable_shards[0].data.shape == k.shape

    def run(params, tokens, mask):
        return forward(params, tokens, config=config, attention_mask=mask).logits

    t, m = put_batch(tokens, mesh), put_batch(mask, mesh)
    compiled = jax.jit(run).lower(params, t, m).compile()  # one program for all 8 devices
    got = np.asarray(compiled(params, t, m))
    real = mask.astype(bool)
    np.testing.assert_allclose(got[real], want[real], atol=1e-4, rtol=0)
    again = np.asarray(
        compiled(params, put_batch(tokens[::-1], mesh), put_batch(mask[::-1], mesh))
    )  # same executable, new data
    np.testing.assert_allclose(again[::-1][real], want[real], atol=1e-4, rtol=0)


def test_shard_params_equals_sharded_load(hf_run):
    path = hf_run[0]
    mesh = make_mesh(**MESHES["tensor"])
    config, plain = load_hf(path)
    _, loaded = load_hf(path, mesh=mesh, layout="tensor")
    moved = shard_params(plain, config, mesh, layout="tensor")
    for a, b in zip(jax.tree.leaves(moved), jax.tree.leaves(loaded), strict=True):
        assert a.sharding.is_equivalent_to(b.sharding, a.ndim)
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_param_shardings_cover_every_leaf():
    from jaxlens.params import param_shapes

    config = ModelConfig.tiny("gpt2")  # d_model 40 divides by 8, vocab 101 does not
    shardings = param_shardings(config, make_mesh(data=1, fsdp=8))
    assert jax.tree.structure(shardings) == jax.tree.structure(param_shapes(config))
    assert shardings["embed"]["embedding"].spec == P(None, "fsdp")
    assert shardings["layers"]["mlp"]["down_proj"]["kernel"].spec == P(None, None, "fsdp")


def test_parse_mesh_reads_the_flag_and_names_a_bad_part():
    import jaxlens

    mesh = jaxlens.sharding.parse_mesh("data=2, fsdp=4")
    assert dict(mesh.shape) == {"data": 2, "fsdp": 4, "tensor": 1}
    assert jaxlens.sharding.parse_mesh("") is None
    with pytest.raises(jaxlens.sharding.MeshError, match="'dta=2'"):
        jaxlens.sharding.parse_mesh("dta=2,fsdp=4")
