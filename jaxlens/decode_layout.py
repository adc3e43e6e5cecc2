"""Weights laid out for one-token decode steps: every matmul kernel stored transposed.

A decode step multiplies a few rows `x [B, in]` by every weight `W [in, out]`. XLA's CPU dot
for a skinny left operand and a row-major `[in, out]` right operand packs (copies) the whole
weight before multiplying, which multiplies the memory traffic of a memory-bound step; with
the weight stored `[out, in]` (contracted axis last, PyTorch's `Linear` layout) it reads each
weight row once in place. `pack_kernels` makes that transposed copy once, before the decode
loop (it replaces the per-layer copy `unstack_layers` makes anyway, so it costs no memory);
`unpack_kernels`, called inside the loop body, gives back the logical `[in, out]` view as a
transpose that XLA folds into the dot's dimension numbers, so no weight is ever copied per
step. The round trip is exact whatever the split into contracted and output axes; the split
only decides whether the fold applies.
"""

from __future__ import annotations

import math
from typing import Any

import jax
from flax import struct

Array = jax.Array

# Leading (contracted) axes of each kernel in the layer einsums; every other kernel has one.
CONTRACTED_AXES = {"o_proj": 2}


@struct.dataclass
class Transposed:
    """A kernel of logical shape `shape` stored as `[prod(out axes), prod(contracted axes)]`."""

    t: Array
    shape: tuple[int, ...] = struct.field(pytree_node=False)


def _pack(path: tuple[Any, ...], leaf: Array) -> Any:
    names = [getattr(k, "key", None) for k in path]
    if not names or names[-1] != "kernel" or leaf.ndim < 2:
        return leaf
    n_in = CONTRACTED_AXES.get(names[-2] if len(names) > 1 else None, 1)
    rows = math.prod(leaf.shape[:n_in])
    return Transposed(t=leaf.reshape(rows, -1).T, shape=tuple(leaf.shape))


def pack_kernels(params: dict[str, Any]) -> dict[str, Any]:
    """`params` with every `kernel` leaf (layers and LM head) stored transposed."""
    return jax.tree_util.tree_map_with_path(_pack, params)


def unpack_kernels(packed: dict[str, Any]) -> dict[str, Any]:
    """The logical params of `pack_kernels(params)`: transposed views, no copies under jit."""
    return jax.tree.map(
        lambda x: x.t.T.reshape(x.shape) if isinstance(x, Transposed) else x,
        packed,
        is_leaf=lambda x: isinstance(x, Transposed),
    )
