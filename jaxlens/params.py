"""Params of a model: their shapes, logical axes, validation and random initialisation.

`params` is a plain nested dict; decoder-layer leaves carry a leading `L` axis. The Flax modules
of `jaxlens.layers` define the tree: tracing their `init` under `jax.eval_shape` gives every
leaf's shape, dtype and logical axis names without allocating anything, so `param_shapes` and
`logical_axes` cost nothing even for a 70B config.

`init_params` does not run the modules' initialisers (vmapped over layers, they materialise
fp32 intermediates of the whole model, and XLA's compile time for many threefry draws in one
program runs to minutes on a small CPU). It draws each leaf on the host with numpy, nothing to
compile: normal(0.02) for kernels and embeddings, ones for norm scales, zeros for biases, in
the param dtype, through `jax.make_array_from_callback` into the leaf's `NamedSharding` (one
device without a mesh). Each (leaf, layer, chunk of ~1M elements) has its own seeded stream, so
a device draws only the rows it holds and the values do not depend on the mesh. Memory is the
params' own size plus one chunk. Under a trace (`jax.eval_shape`, `jit`) the same distributions
are drawn with `jax.random` instead (other values).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxlens.config import ModelConfig
from jaxlens.dtypes import canonical_dtype
from jaxlens.hooks import Chunk
from jaxlens.layers import DecoderLayer, Dense, Embedding, Norm, Step, rope_tables
from jaxlens.sharding import tree_shardings

Array = jax.Array
Params = dict[str, Any]
INIT_STD = 0.02
_CHUNK = 2**20  # elements per independently seeded block of a random leaf


class ParamsError(ValueError):
    """Params whose structure or shapes do not match the config."""


def _init_boxed(key: Array, config: ModelConfig) -> Params:
    """The modules' own init, with logical-axis boxes; only ever traced (`jax.eval_shape`)."""
    c = config
    k_embed, k_pos, k_layers, k_norm, k_head = jax.random.split(key, 5)
    dt = jnp.dtype(c.dtype)
    x = jnp.zeros((1, 1, c.d_model), dt)
    step = Step(chunk=Chunk(token_mask=jnp.ones((1, 1), bool)), mask=jnp.ones((1, 1, 1, 1), bool))
    if c.positions == "rope":
        sin, cos = rope_tables(c, jnp.zeros((1, 1), jnp.int32), dt)
        step = step.replace(sin=sin, cos=cos)

    def init_layer(k):
        return DecoderLayer(c).init(k, x, step, jnp.int32(0), None, lambda _, h: h)["params"]

    ids = jnp.zeros((1, 1), jnp.int32)
    params = {
        "embed": Embedding(c, c.vocab_size, ("vocab", "embed")).init(k_embed, ids)["params"],
        "layers": jax.vmap(init_layer)(jax.random.split(k_layers, c.n_layers)),
        "final_norm": Norm(c, c.d_model, c.norm_eps).init(k_norm, x)["params"],
    }
    if c.positions == "learned":
        params["pos_embed"] = Embedding(c, c.max_seq_len, ("positions", "embed")).init(k_pos, ids)[
            "params"
        ]
    if not c.tie_embeddings:
        params["lm_head"] = Dense(
            c, "BTD,DV->BTV", (c.d_model, c.vocab_size), ("embed", "vocab")
        ).init(k_head, x)["params"]
    return params


def _is_box(x: Any) -> bool:
    return isinstance(x, nn.LogicallyPartitioned)


@functools.lru_cache(maxsize=64)
def _abstract(config: ModelConfig) -> Params:
    return jax.eval_shape(lambda k: _init_boxed(k, config), jax.random.key(0))


def logical_axes(config: ModelConfig) -> Params:
    """Logical axis names per param leaf, e.g. `("layers", "embed", "heads", "head_dim")`."""
    names = jax.tree.map(lambda b: tuple(b.names), _abstract(config), is_leaf=_is_box)
    names["layers"] = jax.tree.map(
        lambda n: ("layers",) + n, names["layers"], is_leaf=lambda n: isinstance(n, tuple)
    )
    return names


@functools.lru_cache(maxsize=64)
def param_shapes(config: ModelConfig) -> Params:
    """`jax.ShapeDtypeStruct` per param leaf (no memory, no compute)."""
    return nn.meta.unbox(_abstract(config))


def count_params(config: ModelConfig) -> int:
    """Number of parameters (elements of all leaves) of `config`, computed from shapes only."""
    return sum(s.size for s in jax.tree.leaves(param_shapes(config)))


def check_params(params: Params, config: ModelConfig) -> None:
    """Raises `ParamsError` naming the first missing, extra or mis-shaped tensor."""
    want = jax.tree_util.tree_flatten_with_path(param_shapes(config))[0]
    try:
        got = dict(jax.tree_util.tree_flatten_with_path(params)[0])
    except Exception as err:  # not a pytree of arrays at all
        raise ParamsError(f"params is not a nested dict of arrays: {err}") from err
    want_paths = {path for path, _ in want}
    for path, spec in want:
        name = jax.tree_util.keystr(path)
        if path not in got:
            raise ParamsError(f"params is missing {name} (expected shape {spec.shape})")
        shape = getattr(got[path], "shape", None)
        if tuple(shape or ()) != spec.shape:
            raise ParamsError(
                f"params{name} has shape {shape}: expected {spec.shape} for this config"
            )
    extra = [jax.tree_util.keystr(p) for p in got if p not in want_paths]
    if extra:
        raise ParamsError(f"params has tensors this config does not use: {extra[:5]}")


def _seed_words(key: Array) -> tuple[int, ...]:
    """The words of a (typed or raw uint32) PRNG key, as seed material for numpy."""
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return tuple(int(w) for w in np.asarray(key).ravel())


def _normal_block(
    seed: tuple[int, ...], leaf: int, spec: jax.ShapeDtypeStruct, stacked: bool, index: tuple
) -> np.ndarray:
    """Block `index` of a normal(0.02) leaf, drawing only the row chunks it covers.

    The values of row chunk `c` of layer `l` come from their own stream `(seed, leaf, l, c)`, so a
    block is the same whatever the sharding that asks for it.
    """
    shape = spec.shape
    index = tuple(index) + (slice(None),) * (len(shape) - len(index))
    ranges = [range(*s.indices(n)) for s, n in zip(index, shape, strict=True)]
    layers, ranges = (ranges[0], ranges[1:]) if stacked else (range(1), ranges)
    rows_total, row_shape = (shape[1], shape[2:]) if stacked else (shape[0], shape[1:])
    rows, rest = ranges[0], tuple(slice(r.start, r.stop) for r in ranges[1:])
    per_chunk = max(1, _CHUNK // max(1, math.prod(row_shape)))
    out = np.empty([len(r) for r in ([layers] if stacked else []) + ranges], spec.dtype)
    view = out if stacked else out[None]
    first, last = rows.start // per_chunk, (rows.stop - 1) // per_chunk
    for j, layer in enumerate(layers):
        for c in range(first, last + 1):
            lo, hi = c * per_chunk, min((c + 1) * per_chunk, rows_total)
            chunk = np.random.default_rng(seed + (leaf, layer, c)).standard_normal(
                (hi - lo,) + row_shape, np.float32
            )
            a, b = max(lo, rows.start), min(hi, rows.stop)
            view[j, a - rows.start : b - rows.start] = (
                INIT_STD * chunk[(slice(a - lo, b - lo),) + rest]
            )
    return out


def _leaf_callback(kind: str, seed: tuple[int, ...], leaf: int, spec, stacked: bool):
    """`index -> host block` of one leaf for `jax.make_array_from_callback`."""
    if kind in ("scale", "bias"):
        value = np.full(spec.shape, 1.0 if kind == "scale" else 0.0, spec.dtype)
        return lambda index: value[index]
    if kind not in ("kernel", "embedding"):
        raise ParamsError(f"no initialiser for a param leaf named {kind!r}")
    cache: dict[tuple, np.ndarray] = {}  # devices holding the same block share one draw

    def callback(index: tuple) -> np.ndarray:
        key = tuple((s.start, s.stop) for s in index)
        if key not in cache:
            cache[key] = _normal_block(seed, leaf, spec, stacked, index)
        return cache[key]

    return callback


def _traced_leaf(kind: str, key: Array, spec: jax.ShapeDtypeStruct) -> Array:
    if kind in ("scale", "bias"):
        return jnp.full(spec.shape, 1.0 if kind == "scale" else 0.0, spec.dtype)
    return (INIT_STD * jax.random.normal(key, spec.shape, jnp.float32)).astype(spec.dtype)


def init_params(
    key: Array,
    config: ModelConfig,
    *,
    dtype: Any = None,
    mesh: jax.sharding.Mesh | None = None,
    layout: str = "fsdp",
) -> Params:
    """Random params: normal(0.02) kernels and embeddings, unit norm scales, zero biases.

    Args:
      key: PRNG key (typed or raw); its words seed every leaf's streams.
      config: the model; leaves are stored in `config.param_dtype`.
      dtype: overrides `config.param_dtype` (any spelling `jaxlens.canonical_dtype` takes);
        the params then fit `config.replace(param_dtype=dtype)`.
      mesh: place each leaf in its `NamedSharding` (`param_shardings`) as it
        is drawn; None: the default device.
      layout: `"fsdp"` or `"tensor"`, the rules of `jaxlens.sharding`.
    """
    if dtype is not None:
        config = config.replace(param_dtype=canonical_dtype(dtype))
    flat, treedef = jax.tree_util.tree_flatten_with_path(param_shapes(config))
    if isinstance(key, jax.core.Tracer):  # under jit / eval_shape: draw inside the trace
        leaves = [
            _traced_leaf(path[-1].key, jax.random.fold_in(key, i), spec)
            for i, (path, spec) in enumerate(flat)
        ]
        return jax.tree_util.tree_unflatten(treedef, leaves)
    if mesh is None:
        shardings = [jax.sharding.SingleDeviceSharding(jax.devices()[0])] * len(flat)
    else:
        shardings = jax.tree.leaves(param_shardings(config, mesh, layout=layout))
    seed = _seed_words(key)
    leaves = []
    for i, ((path, spec), sharding) in enumerate(zip(flat, shardings, strict=True)):
        stacked = path[0].key == "layers"
        callback = _leaf_callback(path[-1].key, seed, i, spec, stacked)
        leaves.append(jax.make_array_from_callback(spec.shape, sharding, callback))
    return jax.tree_util.tree_unflatten(treedef, leaves)


def param_shardings(config: ModelConfig, mesh: Any, layout: str = "fsdp") -> dict[str, Any]:
    """A `NamedSharding` per param leaf (same tree as the params), by `jaxlens.sharding`'s rules."""
    return tree_shardings(logical_axes(config), param_shapes(config), mesh, layout)


def shard_params(
    params: dict[str, Any], config: ModelConfig, mesh: Any, layout: str = "fsdp"
) -> dict[str, Any]:
    """Moves (or reshards) params into their layout's shardings."""
    return jax.device_put(params, param_shardings(config, mesh, layout))
