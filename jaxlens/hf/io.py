"""Hugging Face safetensors checkpoints <-> `(ModelConfig, params)`.

Every leaf of our params is read and written through the one table of `jaxlens.hf.names`
(`tensor_maps`), so loading and saving are inverses by construction.

Loading (`load_hf`) checks the whole checkpoint before reading any data: every tensor the config
needs is present (else the missing names), nothing unknown is there (else the extra names; only
GPT-2's `attn.bias`/`attn.masked_bias` buffers, rotary `inv_freq` buffers and a tied `lm_head`
are skipped), and every header shape matches (else tensor, file, got and expected). Each leaf is
then built by `jax.make_array_from_callback` with its `NamedSharding` (or one device without a
mesh): the callback reads, layer by layer into one preallocated buffer, only the index block the
device holds. So a process reads only its own devices' slices and host memory holds at most one
leaf's block beyond the arrays already built. Only safetensors are read; a directory holding only
pickled weights (`pytorch_model.bin`, `*.pt`, `*.pth`) is refused.

Saving (`save_hf`) writes `config.json` and `model.safetensors`, or `model-0000k-of-0000n`
shards plus `model.safetensors.index.json` past `max_shard_bytes`, one HF tensor at a time.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxlens.config import ModelConfig
from jaxlens.hf import safetensors as st
from jaxlens.hf.names import Path_, TensorMap, hf_names, leaf_shape, tensor_maps
from jaxlens.hf.safetensors import CorruptCheckpointError  # noqa: F401  (re-exported)
from jaxlens.params import check_params, param_shardings

Params = dict[str, Any]
INDEX_FILE = "model.safetensors.index.json"
_PICKLES = ("*.bin", "*.pt", "*.pth", "*.ckpt")
_SKIPPED_SUFFIXES = (".attn.bias", ".attn.masked_bias", ".rotary_emb.inv_freq")


class CheckpointError(ValueError):
    """A checkpoint whose files, tensor names or shapes do not match its config."""


class CheckpointNotFoundError(FileNotFoundError):
    """A missing checkpoint directory or file."""


# --------------------------------------------------------------------------------------------
# Reading


def _find_files(root: Path) -> dict[str, Path]:
    """HF tensor name -> file, from the index or the single `model.safetensors`."""
    if not root.is_dir():
        raise CheckpointNotFoundError(f"{root}: checkpoint directory does not exist")
    index = root / INDEX_FILE
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise CheckpointError(f"{index}: expected JSON with a 'weight_map' ({e})") from None
        return {name: root / fname for name, fname in weight_map.items()}
    single = root / "model.safetensors"
    if single.is_file():
        return {name: single for name in st.SafetensorsFile(single).tensors}
    pickles = sorted(p.name for pat in _PICKLES for p in root.glob(pat))
    if pickles:
        raise CheckpointError(
            f"{root}: only pickled weights {pickles}; jaxlens loads safetensors only (pickles can "
            "run code). Convert once, e.g. `AutoModelForCausalLM.from_pretrained(dir)"
            ".save_pretrained(out, safe_serialization=True)` in a trusted environment."
        )
    raise CheckpointNotFoundError(f"{root}: no model.safetensors or {INDEX_FILE}")


def _detect_prefix(names: set[str], config: ModelConfig) -> str:
    want = "transformer." if config.arch == "gpt2" else "model."
    return want if any(n.startswith(want) for n in names) else ""


def _check_names(
    maps: dict[Path_, TensorMap], names: set[str], config: ModelConfig, root: Path
) -> None:
    expected = {n for path, t in maps.items() for n in hf_names(path, t, config)}
    missing = sorted(expected - names)
    extra = sorted(
        n
        for n in names - expected
        if not n.endswith(_SKIPPED_SUFFIXES)
        and not (config.tie_embeddings and n == "lm_head.weight")
    )
    if missing:
        raise CheckpointError(
            f"{root}: {len(missing)} tensors missing for {config.arch} (config.json): {missing[:8]}"
        )
    if extra:
        raise CheckpointError(
            f"{root}: {len(extra)} tensors not used by {config.arch} (config.json): {extra[:8]}"
        )


class _Reader:
    """Opens each file once (header only) and reads (slices of) HF tensors by name."""

    def __init__(self, files: dict[str, Path]):
        self._files = files
        self._open: dict[Path, st.SafetensorsFile] = {}

    def file(self, name: str) -> st.SafetensorsFile:
        path = self._files[name]
        if path not in self._open:
            if not path.is_file():
                raise CheckpointNotFoundError(f"{path}: listed in {INDEX_FILE}, not found")
            self._open[path] = st.SafetensorsFile(path)
        f = self._open[path]
        if name not in f.tensors:
            raise CheckpointError(f"{path}: tensor {name!r} (listed in the index) is not there")
        return f

    def check_shape(self, name: str, shape: tuple[int, ...]) -> None:
        f = self.file(name)
        got = f.tensors[name].shape
        if got != shape:
            raise CheckpointError(
                f"{f.path}: tensor {name!r} has shape {list(got)}, expected "
                f"{list(shape)} from config.json"
            )


def _pad(index: tuple[slice, ...], n: int) -> tuple[slice, ...]:
    return tuple(index) + (slice(None),) * (n - len(index))


def _read_leaf_block(
    reader: _Reader,
    path: Path_,
    tmap: TensorMap,
    index: tuple[slice, ...],
    config: ModelConfig,
    dtype: np.dtype,
) -> np.ndarray:
    """Our leaf's block `index`, read slice by slice from the HF tensors."""
    stacked = path[0] == "layers"
    full = leaf_shape(path, tmap, config)
    ranges = [s.indices(n)[:2] for s, n in zip(_pad(index, len(full)), full, strict=True)]
    layer_range, ranges = (ranges[0], ranges[1:]) if stacked else ((0, 1), ranges)
    view_slices: list[slice] = [slice(None)] * len(tmap.view)
    reduced_axes = [a for a in range(len(tmap.view)) if not tmap.part or a != tmap.part[0]]
    for ours, (a, b) in enumerate(ranges):
        view_slices[reduced_axes[tmap.perm[ours]]] = slice(a, b)
    if tmap.part:
        view_slices[tmap.part[0]] = slice(tmap.part[1], tmap.part[1] + 1)
    block = [b - a for a, b in ranges]
    out = np.empty(([layer_range[1] - layer_range[0]] if stacked else []) + block, dtype)
    for j, layer in enumerate(range(*layer_range)):
        name = tmap.hf.format(i=layer) if stacked else tmap.hf
        x = reader.file(name).read(name, view_slices, tmap.view)
        if tmap.part:
            x = x.squeeze(tmap.part[0])
        x = x.transpose(tmap.perm)
        if stacked:
            out[j] = x  # casts into the preallocated buffer
        else:
            out[...] = x
    return out


def _leaf_loader(
    reader: _Reader, path: Path_, tmap: TensorMap, config: ModelConfig, dtype: np.dtype
) -> Callable[[tuple[slice, ...]], np.ndarray]:
    cache: dict[tuple, np.ndarray] = {}  # devices holding the same block share one read

    def callback(index: tuple[slice, ...]) -> np.ndarray:
        key = tuple((s.start, s.stop) for s in index)
        if key not in cache:
            cache[key] = _read_leaf_block(reader, path, tmap, index, config, dtype)
        return cache[key]

    return callback


def _set(tree: Params, path: Path_, value: Any) -> None:
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value


def load_config(path: str | os.PathLike, *, dtype: Any = None) -> ModelConfig:
    """A checkpoint directory's `config.json` as a `ModelConfig`, without reading weights."""
    root = Path(path)
    if not root.is_dir():
        raise CheckpointNotFoundError(f"{root}: checkpoint directory does not exist")
    cfg_file = root / "config.json"
    if not cfg_file.is_file():
        raise CheckpointNotFoundError(f"{cfg_file}: not found (is {root} a HF checkpoint dir?)")
    try:
        hf = json.loads(cfg_file.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{cfg_file}: not valid JSON ({e})") from None
    return ModelConfig.from_hf(hf, dtype=dtype)


def load_hf(
    path: str | os.PathLike, *, dtype: Any = None, mesh: Any = None, layout: str = "fsdp"
) -> tuple[ModelConfig, Params]:
    """Loads a HF safetensors checkpoint directory as `(config, params)`.

    Args:
      path: directory with `config.json` and `model.safetensors` or a sharded index.
      dtype: param dtype in any spelling `jaxlens.canonical_dtype` takes (`"bf16"`,
        `np.float32`, `jnp.bfloat16`, ...); None keeps `config.json`'s dtype.
      mesh: a `jax.sharding.Mesh` (see `jaxlens.sharding.make_mesh`); each leaf is placed in its
        `NamedSharding` and each process reads only its devices' slices. None: one device.
      layout: `"fsdp"` or `"tensor"`, the rules of `jaxlens.sharding`.
    """
    root = Path(path)
    config = load_config(root, dtype=dtype)
    files = _find_files(root)
    maps = tensor_maps(config, _detect_prefix(set(files), config))
    _check_names(maps, set(files), config, root)
    reader = _Reader(files)
    for leaf, tmap in maps.items():
        for name in hf_names(leaf, tmap, config):
            reader.check_shape(name, tmap.hf_shape)
    if mesh is not None:
        shardings = param_shardings(config, mesh, layout=layout)
    dt = np.dtype(config.param_dtype)
    params: Params = {}
    for leaf, tmap in maps.items():
        if mesh is not None:
            sharding = _get(shardings, leaf)
        else:
            sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        value = jax.make_array_from_callback(
            leaf_shape(leaf, tmap, config), sharding, _leaf_loader(reader, leaf, tmap, config, dt)
        )
        _set(params, leaf, value)
    return config, params


def _get(tree: Params, path: Path_) -> Any:
    for key in path:
        tree = tree[key]
    return tree


# --------------------------------------------------------------------------------------------
# Writing


def _hf_tensor(
    parts: list[tuple[Path_, TensorMap]], layer: int, leaf: Callable[[Path_, int], np.ndarray]
) -> np.ndarray:
    """One HF tensor, assembled from our leaves (several for a fused tensor)."""
    first = parts[0][1]
    view = None
    for path, tmap in parts:
        x = leaf(path, layer).transpose(np.argsort(tmap.perm))
        if view is None:
            view = np.empty(first.view, x.dtype)
        if tmap.part:
            view[(slice(None),) * tmap.part[0] + (tmap.part[1],)] = x
        else:
            view[...] = x
    return view.reshape(first.hf_shape)


def _leaf_getter(params: Params) -> Callable[[Path_, int], np.ndarray]:
    """`(path, layer) -> host array` of one layer's slice (whole leaf if not stacked)."""
    if any(
        isinstance(x, jax.Array) and not x.is_fully_addressable for x in jax.tree.leaves(params)
    ):
        from jax.experimental import multihost_utils  # several processes: gather to every host

        params = jax.tree.map(
            lambda x: np.asarray(multihost_utils.process_allgather(x, tiled=True)), params
        )

    def leaf(path: Path_, layer: int) -> np.ndarray:
        x = _get(params, path)
        return np.asarray(x[layer] if path[0] == "layers" else x)

    return leaf


def save_hf(
    path: str | os.PathLike,
    config: ModelConfig,
    params: Params,
    *,
    max_shard_bytes: int = 2 * 10**9,
) -> None:
    """Writes `config.json` and safetensors (sharded past `max_shard_bytes`) for transformers.

    One HF tensor is materialized on the host at a time. With params spread over several
    processes every process must call this (leaves are gathered) and only process 0 writes.
    """
    check_params(params, config)
    by_name: dict[str, list[tuple[Path_, TensorMap]]] = {}
    for leaf_path, tmap in tensor_maps(config).items():
        by_name.setdefault(tmap.hf, []).append((leaf_path, tmap))
    leaf = _leaf_getter(params)
    if jax.process_index() != 0:
        return
    specs = []
    for template, parts in by_name.items():
        stacked = parts[0][0][0] == "layers"
        dtype = np.dtype(_get(params, parts[0][0]).dtype)
        for i in range(config.n_layers) if stacked else [0]:
            specs.append(
                st.TensorSpec(
                    template.format(i=i),
                    parts[0][1].hf_shape,
                    dtype,
                    lambda parts=parts, i=i: _hf_tensor(parts, i, leaf),
                )
            )
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps(config.to_hf(), indent=2) + "\n")
    shards: list[list[st.TensorSpec]] = [[]]
    for spec in specs:
        if shards[-1] and sum(s.nbytes for s in shards[-1]) + spec.nbytes > max_shard_bytes:
            shards.append([])
        shards[-1].append(spec)
    for old in root.glob("model*.safetensors*"):
        old.unlink()
    if len(shards) == 1:
        st.write_safetensors(root / "model.safetensors", shards[0])
        return
    names = [f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors" for k in range(len(shards))]
    for fname, shard in zip(names, shards, strict=True):
        st.write_safetensors(root / fname, shard)
    index = {
        "metadata": {"total_size": sum(s.nbytes for s in specs)},
        "weight_map": {
            s.name: fname for fname, shard in zip(names, shards, strict=True) for s in shard
        },
    }
    (root / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")
