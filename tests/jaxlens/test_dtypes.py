"""Every spelling of a dtype reaches the same config and params; anything else is refused.

The reference for "which dtype is meant" is NumPy's own `np.dtype(...)` of the canonical name,
and the params' actual array dtypes after `load_hf` / `init_params`.
"""

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

import jaxlens
from jaxlens import DtypeError, ModelConfig, canonical_dtype

SPELLINGS = {
    "float32": ["float32", "fp32", "f32", "FP32", "torch.float32", np.float32, jnp.float32,
                np.dtype("float32"), jnp.dtype("float32")],
    "bfloat16": ["bfloat16", "bf16", "BF16", "torch.bfloat16", jnp.bfloat16,
                 ml_dtypes.bfloat16, jnp.dtype("bfloat16"), np.dtype(ml_dtypes.bfloat16)],
    "float16": ["float16", "fp16", "half", "f16", np.float16, jnp.float16, np.dtype("float16")],
}  # fmt: skip
CASES = [(want, v) for want, values in SPELLINGS.items() for v in values]


@pytest.mark.parametrize("want, value", CASES, ids=lambda x: repr(x)[:24])
def test_canonical_dtype_spellings(want, value):
    got = canonical_dtype(value)
    assert got == want
    assert np.dtype(got) == np.dtype(jnp.dtype(value) if not isinstance(value, str) else got)


@pytest.mark.parametrize(
    "bad", ["flaot32", "float64", "int8", "", np.float64, np.int32, jnp.int8, None, 3, object()]
)
def test_other_dtypes_are_refused_with_the_spellings(bad):
    with pytest.raises(DtypeError) as err:
        canonical_dtype(bad)
    assert isinstance(err.value, ValueError)
    message = str(err.value)
    assert repr(bad) in message and "bf16" in message and "jnp.bfloat16" in message


def test_model_config_normalises_once():
    configs = [ModelConfig.tiny(param_dtype=v, dtype=v) for v in SPELLINGS["bfloat16"]]
    assert all(c == configs[0] and hash(c) == hash(configs[0]) for c in configs)
    assert (configs[0].param_dtype, configs[0].dtype) == ("bfloat16", "bfloat16")
    with pytest.raises(DtypeError, match="ModelConfig.param_dtype='bfloat61'"):
        ModelConfig.tiny(param_dtype="bfloat61")


def _leaf_dtypes(params):
    return {np.dtype(x.dtype) for x in jax.tree.leaves(params)}


def test_load_hf_and_init_params_take_any_spelling(tmp_path):
    config = ModelConfig.tiny(n_layers=1)
    params = jaxlens.init_params(jax.random.key(0), config, dtype=np.float16)
    assert _leaf_dtypes(params) == {np.dtype("float16")}
    jaxlens.save_hf(tmp_path, config.replace(param_dtype="float16"), params)
    for value, want in [
        ("bf16", ml_dtypes.bfloat16),
        (np.float32, np.float32),
        (jnp.bfloat16, ml_dtypes.bfloat16),
        (jnp.dtype("float16"), np.float16),
        (None, np.float16),  # the file's own dtype
    ]:
        loaded, params = jaxlens.load_hf(tmp_path, dtype=value)
        assert loaded.param_dtype == np.dtype(want).name
        assert _leaf_dtypes(params) == {np.dtype(want)}
    with pytest.raises(DtypeError, match="'bfloat61'"):
        jaxlens.load_hf(tmp_path, dtype="bfloat61")
    with pytest.raises(DtypeError):
        jaxlens.init_params(jax.random.key(0), config, dtype="int8")
