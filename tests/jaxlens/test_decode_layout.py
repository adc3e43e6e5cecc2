"""The decode layout: kernels stored `[out, in]` and read back exactly, against numpy."""

import jax
import numpy as np

from jaxlens import ModelConfig, init_params
from jaxlens.decode_layout import Transposed, pack_kernels, unpack_kernels


def test_kernels_stored_transposed_and_read_back_exactly():
    config = ModelConfig.tiny()
    params = init_params(jax.random.key(0), config)
    layer = jax.tree.map(lambda a: a[0], params["layers"])
    tree = {"layers": [layer], "lm_head": params["lm_head"], "embed": params["embed"]}
    packed = pack_kernels(tree)

    d, h, e, f = config.d_model, config.n_heads, config.head_dim, config.d_ff
    attn, mlp = packed["layers"][0]["attn"], packed["layers"][0]["mlp"]
    q, o = (
        np.asarray(layer["attn"]["q_proj"]["kernel"]),
        np.asarray(layer["attn"]["o_proj"]["kernel"]),
    )
    np.testing.assert_array_equal(attn["q_proj"]["kernel"].t, q.reshape(d, h * e).T)
    np.testing.assert_array_equal(attn["o_proj"]["kernel"].t, o.reshape(h * e, d).T)
    assert mlp["down_proj"]["kernel"].t.shape == (d, f)
    head = np.asarray(params["lm_head"]["kernel"])
    np.testing.assert_array_equal(packed["lm_head"]["kernel"].t, head.T)
    assert not isinstance(packed["embed"]["embedding"], Transposed)  # a lookup, not a matmul
    assert not isinstance(packed["layers"][0]["attn_norm"]["scale"], Transposed)

    back = jax.jit(unpack_kernels)(packed)
    assert jax.tree.structure(back) == jax.tree.structure(tree)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(tree), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
