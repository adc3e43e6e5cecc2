"""A small safetensors reader and writer that touch only the bytes they need.

The format: 8 bytes little-endian header length `N`, `N` bytes of JSON (`name -> {dtype, shape,
data_offsets}`, plus optional `__metadata__`), then the raw row-major tensor data.

Why our own reader rather than `safetensors.safe_open`: loading places each device's slice
directly (`jax.make_array_from_callback`), and we want (1) reads of exactly that slice, also when
it is strided (a column block of a row-major matrix), (2) no memory map, whose resident pages
would count twice against the host's memory next to the arrays built from them, and (3) a byte
count that the multi-host test can check. `read` does positioned reads (`os.preadv`) straight
into the output buffer, one per contiguous run of the requested block. The writer streams one
tensor at a time, so saving never holds a second copy of the model. Files it writes are ordinary
safetensors files that `safetensors` and `transformers` read.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import ml_dtypes
import numpy as np

DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype(np.float64),
    "F32": np.dtype(np.float32),
    "F16": np.dtype(np.float16),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "I64": np.dtype(np.int64),
    "I32": np.dtype(np.int32),
    "I16": np.dtype(np.int16),
    "I8": np.dtype(np.int8),
    "U8": np.dtype(np.uint8),
    "BOOL": np.dtype(np.bool_),
}
_CODES = {v: k for k, v in DTYPES.items()}
_MAX_HEADER = 100 * 2**20
_BYTES_READ = [0]


class CorruptCheckpointError(ValueError):
    """A safetensors file that is truncated or whose header does not parse."""


def bytes_read() -> int:
    """Tensor bytes read by this process through `SafetensorsFile.read` since the last reset."""
    return _BYTES_READ[0]


def reset_bytes_read() -> None:
    _BYTES_READ[0] = 0


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    dtype: np.dtype
    shape: tuple[int, ...]
    offset: int  # absolute byte offset of the first element in the file


class SafetensorsFile:
    """The parsed header of one `.safetensors` file; `read` fetches (slices of) tensors."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.tensors = _parse_header(self.path)

    def read(
        self, name: str, index: Sequence[slice] = (), view: tuple[int, ...] | None = None
    ) -> np.ndarray:
        """Reads `tensor[index]`, optionally seeing the tensor as the row-major reshape `view`.

        Args:
          name: tensor name in the header.
          index: one unit-step slice per leading axis (missing trailing axes are whole).
          view: a shape with the same element count (e.g. `[H*E, D]` seen as `[H, E, D]`).
        """
        info = self.tensors[name]
        shape = tuple(view) if view is not None else info.shape
        if math.prod(shape) != math.prod(info.shape):
            raise ValueError(f"{self.path}: view {shape} of {name} {info.shape} changes its size")
        ranges = _ranges(index, shape, f"{self.path}:{name}")
        out = np.empty([b - a for a, b in ranges], info.dtype)
        if out.size:
            fd = os.open(self.path, os.O_RDONLY)
            try:
                _read_block(fd, info, shape, ranges, out, self.path, name)
            finally:
                os.close(fd)
        _BYTES_READ[0] += out.nbytes
        return out


def _parse_header(path: Path) -> dict[str, TensorInfo]:
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise CorruptCheckpointError(f"{path}: truncated ({size} bytes), not safetensors")
            n = int.from_bytes(head, "little")
            if n > min(size - 8, _MAX_HEADER):
                raise CorruptCheckpointError(
                    f"{path}: header length {n} exceeds the file "
                    f"({size} bytes): truncated or not safetensors"
                )
            raw = json.loads(f.read(n))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CorruptCheckpointError(f"{path}: header is not valid JSON ({e})") from None
    if not isinstance(raw, dict):
        raise CorruptCheckpointError(f"{path}: header is not a JSON object")
    raw.pop("__metadata__", None)
    tensors = {}
    for name, entry in raw.items():
        try:
            dtype, shape = DTYPES[entry["dtype"]], tuple(int(s) for s in entry["shape"])
            start, end = (int(o) for o in entry["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise CorruptCheckpointError(
                f"{path}: bad header entry for tensor {name!r}: {entry!r}"
            ) from None
        if end - start != math.prod(shape) * dtype.itemsize or start < 0:
            raise CorruptCheckpointError(
                f"{path}: tensor {name!r} data_offsets {start}..{end} "
                f"do not match dtype {entry['dtype']} shape {shape}"
            )
        if 8 + n + end > size:
            raise CorruptCheckpointError(
                f"{path}: truncated: tensor {name!r} ends at byte "
                f"{8 + n + end} but the file has {size} bytes"
            )
        tensors[name] = TensorInfo(dtype, shape, 8 + n + start)
    return tensors


def _ranges(index: Sequence[slice], shape: tuple[int, ...], what: str) -> list[tuple[int, int]]:
    if len(index) > len(shape):
        raise IndexError(f"{what}: {len(index)} slices for a {len(shape)}-d tensor")
    out = []
    for i, n in enumerate(shape):
        s = index[i] if i < len(index) else slice(None)
        start, stop, step = s.indices(n)
        if step != 1:
            raise IndexError(f"{what}: only unit-step slices are read, got {s}")
        out.append((start, max(start, stop)))
    return out


def _read_block(
    fd: int,
    info: TensorInfo,
    shape: tuple[int, ...],
    ranges: list[tuple[int, int]],
    out: np.ndarray,
    path: Path,
    name: str,
) -> None:
    """Fills `out` with the block `ranges` of the row-major tensor, one pread per run."""
    item = info.dtype.itemsize
    strides = [math.prod(shape[i + 1 :]) for i in range(len(shape))]
    partial = [i for i, (a, b) in enumerate(ranges) if (a, b) != (0, shape[i])]
    k = partial[-1] if partial else 0  # runs are contiguous from axis k on
    run = (ranges[k][1] - ranges[k][0]) * strides[k] * item if shape else item
    flat = out.reshape(-1).view(np.uint8)
    pos = 0
    for outer in itertools.product(*(range(a, b) for a, b in ranges[:k])):
        first = sum(o * strides[i] for i, o in enumerate(outer))
        if shape:
            first += ranges[k][0] * strides[k]
        offset, view = info.offset + first * item, memoryview(flat[pos : pos + run])
        while len(view):
            got = os.preadv(fd, [view], offset)
            if got <= 0:
                raise CorruptCheckpointError(f"{path}: truncated while reading tensor {name!r}")
            view, offset = view[got:], offset + got
        pos += run


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """A tensor to write: its shape and dtype up front, its data on demand."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    produce: Callable[[], np.ndarray]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * np.dtype(self.dtype).itemsize


def write_safetensors(
    path: str | os.PathLike, specs: Iterable[TensorSpec], metadata: dict[str, str] | None = None
) -> None:
    """Writes the tensors in order, calling each `produce()` once, holding one at a time."""
    specs = list(specs)
    header: dict[str, object] = {"__metadata__": metadata or {"format": "pt"}}
    offset = 0
    for s in specs:
        if np.dtype(s.dtype) not in _CODES:
            raise ValueError(f"tensor {s.name!r}: dtype {s.dtype} cannot be written to safetensors")
        header[s.name] = {
            "dtype": _CODES[np.dtype(s.dtype)],
            "shape": list(s.shape),
            "data_offsets": [offset, offset + s.nbytes],
        }
        offset += s.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned
    tmp = Path(str(path) + ".tmp")
    with open(tmp, "wb") as f:
        f.write(len(raw).to_bytes(8, "little") + raw)
        for s in specs:
            arr = np.ascontiguousarray(s.produce(), dtype=s.dtype)
            if arr.shape != s.shape:
                raise ValueError(
                    f"tensor {s.name!r}: produced shape {arr.shape}, declared {s.shape}"
                )
            f.write(arr.reshape(-1).view(np.uint8).data)
    os.replace(tmp, path)
