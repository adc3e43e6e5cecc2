"""On-disk state of the streaming passes: atomic `.npz` writes, resume, and reading results back.

`pair_pass(..., out_dir=...)` keeps `pass.json` (the options, shapes and token count that made
the folder; a resume with other ones is refused) and `neighbours.npz` (the neighbour lists so
far and `blocks_done`), rewritten atomically after every block. `save_summary`/`load_summary`
keep a first pass; `load_neighbours` reads a finished pass's lists back.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np


class PassError(ValueError):
    """A source, option or resume folder that does not fit the pass."""


class LatentSummary(NamedTuple):
    """The first pass: per layer and latent (`[L, N]`), over `n_tokens` tokens."""

    n_tokens: int
    max: np.ndarray  # [L, N]
    fires: np.ndarray  # [L, N] tokens with act > 0
    top_values: np.ndarray  # [L, N, C] highest activations, descending
    top_index: np.ndarray  # [L, N, C] their global token index (-1: none)


class Neighbours(NamedTuple):
    """Top-k lists per measure: `rows[m]` for earlier latents, `cols[m]` for later latents."""

    row_values: dict[str, np.ndarray]  # [P, A, k] best later latents of each earlier latent
    row_index: dict[str, np.ndarray]  # [P, A, k]
    col_values: dict[str, np.ndarray]  # [P, B, k] best earlier latents of each later latent
    col_index: dict[str, np.ndarray]  # [P, B, k]


def write_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def state_key(options: Any, shape, n_tokens: int) -> dict[str, Any]:
    return {"options": dataclasses.asdict(options), "shape": list(shape), "n_tokens": n_tokens}


def load_resume(out_dir: Path, key: dict[str, Any]) -> tuple[int, dict[str, np.ndarray]]:
    meta, arrays = out_dir / "pass.json", out_dir / "neighbours.npz"
    if not meta.exists():
        meta.write_text(json.dumps(key, indent=2))
        return 0, {}
    saved = json.loads(meta.read_text())
    if saved != json.loads(json.dumps(key)):
        raise PassError(
            f"{meta} was written by a pass with other options or data ({saved}); use the same "
            "options to resume, or another out_dir"
        )
    if not arrays.exists():
        return 0, {}
    with np.load(arrays) as f:
        state = {k: f[k] for k in f.files}
    return int(state.pop("blocks_done")), state


def save_summary(path: str | os.PathLike, summary: LatentSummary) -> None:
    """Write a first pass to `path` (.npz), atomically."""
    write_atomic(Path(path), {k: np.asarray(v) for k, v in summary._asdict().items()})


def load_summary(path: str | os.PathLike) -> LatentSummary:
    """A first pass `save_summary` wrote."""
    with np.load(path) as f:
        return LatentSummary(**{k: (int(f[k]) if k == "n_tokens" else f[k]) for k in f.files})


def load_neighbours(out_dir: str | os.PathLike) -> Neighbours:
    """The neighbour lists of a finished `pair_pass(..., out_dir=out_dir)`."""
    path = Path(out_dir) / "neighbours.npz"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: run the pairwise pass first")
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    fields = {name: {} for name in Neighbours._fields}
    for key, value in arrays.items():
        if "/" in key:
            field, measure = key.split("/", 1)
            fields[field][measure] = value
    return Neighbours(**fields)


def save_edges(out_dir: Path, measure: str, pair: int, part: int, rows, cols, values) -> None:
    """One part of layer pair `pair`'s edges under `measure` (`edges/<measure>_pair<p>_part<j>`)."""
    folder = Path(out_dir) / "edges"
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(
        folder / f"{measure}_pair{pair:03d}_part{part:04d}.npz",
        {
            "rows": np.asarray(rows, np.int32),
            "cols": np.asarray(cols, np.int32),
            "values": np.asarray(values, np.float32),
        },
    )


def load_edges(out_dir: str | os.PathLike, measure: str, pair: int) -> tuple[np.ndarray, ...]:
    """`(rows, cols, values)`: every edge of layer pair `pair` under `measure` that a pass with
    `PassOptions(edge_measures=...)` wrote (all parts)."""
    parts = sorted((Path(out_dir) / "edges").glob(f"{measure}_pair{pair:03d}_part*.npz"))
    if not parts:
        raise FileNotFoundError(f"no {measure} edges of pair {pair} under {out_dir}/edges")
    got = []
    for path in parts:
        with np.load(path) as f:
            got.append((f["rows"], f["cols"], f["values"]))
    return tuple(np.concatenate(x) for x in zip(*got, strict=True))
