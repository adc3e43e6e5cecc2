"""One spelling for the three floating-point dtypes a model's weights and activations may use.

Users write a dtype many ways: `"bf16"`, `"bfloat16"`, `np.float32`, `jnp.bfloat16`,
`jnp.dtype("float16")`, `"torch.float16"` (from a HF `config.json`). `canonical_dtype` turns
every one of them into `"float32"`, `"bfloat16"` or `"float16"`, the names configs store (a
string keeps `ModelConfig` hashable and readable); anything else raises `DtypeError` naming the
value and the accepted spellings. Everywhere jaxlens takes a dtype it goes through this function
once, at the boundary.
"""

from __future__ import annotations

from typing import Any

import numpy as np

DTYPES = ("float32", "bfloat16", "float16")
ALIASES: dict[str, str] = {
    "float32": "float32",
    "fp32": "float32",
    "f32": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "f16": "float16",
    "half": "float16",
}


class DtypeError(ValueError):
    """A dtype that is not one of float32, bfloat16, float16 in any accepted spelling."""


def _error(value: Any, name: str) -> DtypeError:
    return DtypeError(
        f"{name}={value!r}: expected one of {DTYPES} as a string ({', '.join(sorted(ALIASES))}), "
        "a NumPy dtype (np.float32) or a JAX dtype (jnp.bfloat16)"
    )


def canonical_dtype(value: Any, *, name: str = "dtype") -> str:
    """`"float32"`, `"bfloat16"` or `"float16"` for any spelling of those dtypes.

    Accepts strings (case-insensitive, an optional `torch.` prefix), NumPy and JAX dtypes, and
    the scalar types `np.float32` / `jnp.bfloat16`. Raises `DtypeError` (a `ValueError`) for
    anything else, e.g. a typo or an integer dtype; `name` is the argument named in the message.
    """
    if isinstance(value, str):
        canonical = ALIASES.get(value.strip().lower().removeprefix("torch."))
        if canonical is None:
            raise _error(value, name)
        return canonical
    if value is None or isinstance(value, bool):
        raise _error(value, name)
    try:
        dtype = np.dtype(value)  # np/jnp scalar types, np.dtype, ml_dtypes.bfloat16
    except TypeError:
        raise _error(value, name) from None
    if dtype.name not in DTYPES:
        raise _error(value, name)
    return dtype.name
