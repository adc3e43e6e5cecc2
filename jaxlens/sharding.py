"""Logical axis names -> mesh axes: one rules table, two layouts.

The mesh has three named axes: `data` (batch only; params are replicated over it), `fsdp`
(params split along the model width, gathered layer by layer inside the scan) and `tensor`
(Megatron-style: heads, kv heads, MLP width and vocab split). Every param leaf carries logical
axis names (`jaxlens.model.logical_axes`: `vocab embed layers heads kv_heads head_dim mlp norm
positions`); `RULES[layout]` maps each name to a mesh axis or to None (replicated):

    layout    embed  heads  kv_heads  mlp     vocab   (layers, head_dim, norm, positions)
    fsdp      fsdp   -      -         -       -       -
    tensor    fsdp   tensor tensor    tensor  tensor  -

Other packages add their own logical names with `register_rule` (the SAE registers `latents ->
tensor`); the core knows only the model's names. `tree_shardings` turns a tree of logical names
and shapes into `NamedSharding`s (the model's own tree: `jaxlens.params.param_shardings`).

`embed -> fsdp` stays in the tensor layout, so a `(fsdp, tensor)` mesh is 2-D sharding; on a mesh
whose `fsdp` axis has size 1 it changes nothing. A mesh axis shards a dimension only if it divides
it, and only once per array; otherwise that dimension is replicated (e.g. MQA's single kv head
under `tensor=4`, or a vocab of 101 under `fsdp=4`). Batches go over `("data", "fsdp")`.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "tensor")
LAYOUTS = ("fsdp", "tensor")
RULES: dict[str, dict[str, str | None]] = {
    "fsdp": {"embed": "fsdp"},
    "tensor": {
        "embed": "fsdp",
        "heads": "tensor",
        "kv_heads": "tensor",
        "mlp": "tensor",
        "vocab": "tensor",
    },
}
BATCH_AXES = ("data", "fsdp")


class MeshError(ValueError):
    """A mesh request that does not fit the devices, or an unknown layout."""


def make_mesh(
    *, data: int | None = None, fsdp: int = 1, tensor: int = 1, devices: list[Any] | None = None
) -> Mesh:
    """A `("data", "fsdp", "tensor")` mesh over all (global) devices.

    Args:
      data, fsdp, tensor: axis sizes; `data=None` takes the devices left over.
      devices: defaults to `jax.devices()` (every process's devices in a multi-host run).
    """
    devices = list(jax.devices() if devices is None else devices)
    if data is None:
        if len(devices) % (fsdp * tensor):
            raise MeshError(
                f"make_mesh: fsdp*tensor={fsdp * tensor} does not divide the {len(devices)} devices"
            )
        data = len(devices) // (fsdp * tensor)
    if data * fsdp * tensor != len(devices):
        raise MeshError(
            f"make_mesh: data*fsdp*tensor={data}*{fsdp}*{tensor} must equal the "
            f"{len(devices)} devices"
        )
    return jax.make_mesh(
        (data, fsdp, tensor), MESH_AXES, axis_types=(AxisType.Auto,) * 3, devices=devices
    )


def parse_mesh(spec: str | None) -> Mesh | None:
    """A `--mesh` flag, `"data=2,fsdp=4,tensor=1"`, as `make_mesh(...)` (missing axes are 1).

    Empty or None means no mesh (one device). Anything else raises `MeshError` naming the part.
    """
    if not spec:
        return None
    sizes = {}
    for part in spec.split(","):
        name, _, value = part.partition("=")
        if name.strip() not in ("data", "fsdp", "tensor") or not value.strip().isdigit():
            raise MeshError(
                f"--mesh {spec!r}: expected comma-separated data=N,fsdp=N,tensor=N, got {part!r}"
            )
        sizes[name.strip()] = int(value)
    return make_mesh(**sizes)


def logical_to_spec(
    names: tuple[str, ...], shape: tuple[int, ...], mesh: Mesh, layout: str = "fsdp"
) -> PartitionSpec:
    """The `PartitionSpec` of one array from its logical axis names (see the module table)."""
    if layout not in RULES:
        raise MeshError(f"layout={layout!r}: expected one of {LAYOUTS}")
    if len(names) != len(shape):
        raise ValueError(f"logical names {names} do not match shape {shape}")
    rules, used, spec = RULES[layout], set(), []
    for name, size in zip(names, shape, strict=True):
        axis = rules.get(name)
        n = mesh.shape.get(axis, 1) if axis else 1
        if axis is None or n == 1 or size % n or axis in used:
            spec.append(None)
        else:
            spec.append(axis)
            used.add(axis)
    return PartitionSpec(*spec)


def register_rule(name: str, axis: str | None, *, layout: str) -> None:
    """Maps the logical axis `name` to the mesh `axis` (None: replicated) in `layout`.

    For packages that shard arrays of their own (`sae` registers `latents -> tensor`).
    Registering the same mapping again is a no-op; a conflicting one raises `MeshError`.
    """
    if layout not in RULES:
        raise MeshError(f"layout={layout!r}: expected one of {LAYOUTS}")
    if axis is not None and axis not in MESH_AXES:
        raise MeshError(f"register_rule({name!r}): axis={axis!r}, expected one of {MESH_AXES}")
    if RULES[layout].get(name, axis) != axis:
        raise MeshError(
            f"register_rule: {name!r} already maps to {RULES[layout][name]!r} in layout "
            f"{layout!r}, not {axis!r}"
        )
    RULES[layout][name] = axis


def tree_shardings(names: Any, shapes: Any, mesh: Mesh, layout: str = "fsdp") -> Any:
    """A `NamedSharding` per leaf: `names` a tree of logical-name tuples, `shapes` the same tree
    of arrays or `jax.ShapeDtypeStruct`s."""
    return jax.tree.map(
        lambda n, s: NamedSharding(mesh, logical_to_spec(n, s.shape, mesh, layout)),
        names,
        shapes,
        is_leaf=lambda x: isinstance(x, tuple),
    )


def batch_sharding(mesh: Mesh, batch: int, ndim: int = 2) -> NamedSharding:
    """Inputs `[B, ...]`: batch over `data` x `fsdp` (each only if it divides)."""
    axes, left = [], batch
    for axis in BATCH_AXES:
        n = mesh.shape[axis]
        if n > 1 and left % n == 0:
            axes.append(axis)
            left //= n
    return NamedSharding(mesh, PartitionSpec(tuple(axes) or None, *([None] * (ndim - 1))))


def put_batch(x: Any, mesh: Mesh | None) -> jax.Array:
    """A host array `[B, ...]` that every process holds whole, on the device(s): with no mesh on
    the default device; on a mesh as a global array with the batch over `data` x `fsdp`."""
    x = np.asarray(x)
    if mesh is None:
        return jax.device_put(x)
    sharding = batch_sharding(mesh, x.shape[0], x.ndim)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])
