"""What a latent source yields, and a cache of it: the model and the SAE encodes run once a run.

A source batch is either dense latents `[L, T, N]` (a NumPy or JAX array) or `Codes`: per layer
a `scipy.sparse.csr_matrix [T, N]` holding each token's nonzero latents (indices and values, as
a TopK, JumpReLU or ReLU SAE gives them). `to_codes` and `to_dense` convert exactly (float32
values unchanged), so every pass takes either.

`CodeCache(source, folder=None)` is itself a source: the first call runs `source` (the model
forward plus every layer's SAE encode) and keeps each batch as `Codes`, in memory or as one
`.npz` shard per batch under `folder`; later calls (the first pass, the pairwise pass, every
block of a blocked pass) read the cache and never run the model again. On disk the shards are
written atomically and `complete.json` last, so a rerun over the same folder reuses a finished
cache and starts an unfinished one again. Memory is one batch at a time with a folder, the
whole code set (about 8 bytes per nonzero latent) without one.

`check_batch` and `progress` are the passes' shared helpers for reading a source.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import scipy.sparse as sp

import jaxlens.runs
from sae.evolution.store import PassError, write_atomic


class Codes(NamedTuple):
    """One batch of sparse latents: `layers[l]` is a CSR matrix `[T, N]` (float32)."""

    layers: tuple[sp.csr_matrix, ...]

    @property
    def shape(self) -> tuple[int, int, int]:
        t, n = self.layers[0].shape
        return (len(self.layers), t, n)

    @property
    def ndim(self) -> int:
        return 3

    @property
    def nnz(self) -> int:
        return int(sum(m.nnz for m in self.layers))


def to_codes(batch: Any) -> Codes:
    """A batch as `Codes` (dense `[L, T, N]` converted; `Codes` returned as they are)."""
    if isinstance(batch, Codes):
        return batch
    x = np.asarray(batch, np.float32)
    return Codes(tuple(sp.csr_matrix(x[i]) for i in range(x.shape[0])))


def to_dense(batch: Any) -> Any:
    """A batch as dense `[L, T, N]` (float32 NumPy for `Codes`; arrays returned as they are)."""
    if not isinstance(batch, Codes):
        return batch
    return np.stack([m.toarray() for m in batch.layers]).astype(np.float32, copy=False)


def check_batch(x: Any, shape: tuple[int, ...] | None) -> tuple[int, ...]:
    """`x`'s shape `[L, T, N]`, checked against an earlier batch's (`shape`, T not compared)."""
    if getattr(x, "ndim", 0) != 3:
        raise PassError(f"a source batch must be [L, T, N]; got shape {getattr(x, 'shape', None)}")
    if x.shape[0] < 2 and shape is None:
        raise PassError(f"a source batch needs >= 2 layers; got shape {x.shape}")
    if shape is not None and (x.shape[0], x.shape[2]) != (shape[0], shape[2]):
        raise PassError(f"source batches changed shape: {tuple(x.shape)} after {shape}")
    return tuple(x.shape)


def progress(batches: Iterable[Any], show: bool, desc: str) -> Iterable[Any]:
    """`batches`, with a token progress bar when `show`."""
    if not show:
        yield from batches
        return
    bar = jaxlens.runs.progress(desc=desc, unit="tok")
    for acts in batches:
        yield acts
        bar.update(int(acts.shape[1]))
    bar.close()


def _save_shard(path: Path, codes: Codes) -> None:
    arrays = {"shape": np.asarray(codes.shape, np.int64)}
    for i, m in enumerate(codes.layers):
        arrays[f"indptr{i}"], arrays[f"indices{i}"], arrays[f"data{i}"] = (
            m.indptr,
            m.indices,
            m.data,
        )
    write_atomic(path, arrays)


def _load_shard(path: Path) -> Codes:
    with np.load(path) as f:
        n_layers, t, n = (int(v) for v in f["shape"])
        return Codes(
            tuple(
                sp.csr_matrix((f[f"data{i}"], f[f"indices{i}"], f[f"indptr{i}"]), shape=(t, n))
                for i in range(n_layers)
            )
        )


class CodeCache:
    """A source that runs `source` once and then reads its batches back as `Codes` (module
    docstring). `dense=True` yields dense `[L, T, N]` batches instead (the same values)."""

    def __init__(
        self,
        source: Callable[[], Iterable[Any]],
        *,
        folder: str | os.PathLike | None = None,
        dense: bool = False,
    ):
        self.source, self.dense = source, dense
        self.folder = None if folder is None else Path(folder)
        self._memory: list[Codes] | None = None

    @property
    def complete(self) -> bool:
        """Whether the source has been read to the end (the cache holds every batch)."""
        if self.folder is None:
            return self._memory is not None
        return (self.folder / "complete.json").exists()

    def _stored(self) -> Iterator[Codes]:
        if self.folder is None:
            yield from self._memory
            return
        n = json.loads((self.folder / "complete.json").read_text())["batches"]
        for i in range(n):
            yield _load_shard(self.folder / f"shard{i:06d}.npz")

    def _fill(self) -> Iterator[Codes]:
        kept: list[Codes] = []
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
        count = 0
        for count, batch in enumerate(self.source(), start=1):
            codes = to_codes(batch)
            if self.folder is None:
                kept.append(codes)
            else:
                _save_shard(self.folder / f"shard{count - 1:06d}.npz", codes)
            yield codes
        if self.folder is None:
            self._memory = kept
        else:
            (self.folder / "complete.json").write_text(json.dumps({"batches": count}))

    def __call__(self) -> Iterator[Any]:
        for codes in self._stored() if self.complete else self._fill():
            yield to_dense(codes) if self.dense else codes
