"""Streaming passes over token batches: per-latent summaries, then blocked pairwise statistics.

A *source* is a zero-argument callable returning an iterable of latent activations `[L, T, N]`
(L layers, T tokens, N latents per layer), the same batches in the same order on every call (a
model forward plus the SAE encoders, or arrays). Two passes read it:

1. `first_pass`: per latent, its maximum, how often it fires, and its top activating tokens
   (value and global token index) for the feature browser. The maxima turn a threshold given as
   a fraction (`active = act > threshold * max`) into one threshold per latent.
2. `pair_pass`: for every adjacent pair (L, L+1) at once, the sums of `sae.evolution.stats` over
   all tokens, for a block of `block` earlier-side latents against all later-side latents. A
   block's sums become its measures, which become top-k neighbour lists (per earlier latent:
   its best later latents; per later latent: its best earlier latents, merged over blocks) and,
   optionally, dense `[P, block, N]` arrays on disk. Memory is O(P * block * N), not O(P * N^2);
   the price is one read of the source per block.

`PassOptions(accumulate="sparse")` replaces step 2's dense blocks with `sae.evolution.coactive`:
sums over the co-active pairs only, on the host, one read of the source and no blocks, the same
statistics; "auto" picks it on a CPU backend for sparse codes (`choose_accumulate`). Batches may
be dense arrays or `sae.evolution.codes.Codes`; `codes.CodeCache` makes a source that runs the
model once for every pass and block.

Sharding: with a mesh, a batch is placed (`put_latents`) tokens over `data`/`fsdp`
(`jaxlens.sharding`'s batch axes) and latents over the mesh axis of the `latents` rule that
`sae.step` registers in the core's rules table (`tensor`, as SAE training shards them); the
`[P, block, N]` sums keep the later-side latents on that axis, so each device holds `1/tensor`
of them and XLA reduces the token axis across `data`.

Resume: with `out_dir`, the first pass's results and, after every block, the neighbour lists so
far are written atomically; calling `pair_pass` again with the same options continues after the
last finished block, giving the same result as an uninterrupted pass.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import jaxlens
from sae import step
from sae.evolution import coactive, codes, stats, store
from sae.evolution.store import LatentSummary, Neighbours, PassError

Source = Callable[[], Iterable[Any]]
ACCUMULATE = ("auto", "dense", "sparse")
_NO_EDGES = ("mutual_info", "decoder_cosine")  # absent pairs' values not enumerable cheaply
AUTO_DENSITY = 1 / 32  # "auto" goes sparse below this fraction of nonzero latents per token


@dataclasses.dataclass(frozen=True, kw_only=True)
class PassOptions:
    """How `pair_pass` computes and keeps the pairwise statistics.

    Attributes:
        measures: names from `sae.evolution.stats.MEASURES`.
        threshold: a latent is active where its activation exceeds `threshold` times its maximum
            over the first pass (0.0: active where > 0). In [0, 1).
        block: earlier-side latents per block (None: all at once). Smaller is less memory and
            one more read of the source per block.
        top_k: neighbours kept per latent and measure (capped at the other side's width).
        dense: also write each block's dense measures to `out_dir/dense/`.
        sparse_cap: use the sparse update (`stats.update_sparse`) with this many latents per
            token; a batch with a denser token falls back to the dense update. None: dense.
            Only for `accumulate="dense"`.
        accumulate: "dense" (jitted `[P, block, N]` sums, blocked, sharded over a mesh),
            "sparse" (`sae.evolution.coactive`: sums over the co-active pairs only, on the
            host, one read of the source, no blocks) or "auto" (`choose_accumulate`). Both give
            the same statistics.
        edge_measures: measures whose every pair at or above `edge_min` is written to
            `out_dir/edges/` (`store.load_edges`): the feature graph from the full statistics,
            not only the top-k lists. Not `mutual_info` or `decoder_cosine`.
        edge_min: the smallest similarity kept as an edge (> 0).
    """

    measures: tuple[str, ...] = stats.TOKEN_MEASURES
    threshold: float = 0.0
    block: int | None = None
    top_k: int = 16
    dense: bool = False
    sparse_cap: int | None = None
    accumulate: str = "auto"
    edge_measures: tuple[str, ...] = ()
    edge_min: float = 0.1

    def __post_init__(self):
        object.__setattr__(self, "measures", stats.check_measures(self.measures))
        if not 0.0 <= self.threshold < 1.0:
            raise PassError(f"threshold must be in [0, 1); got {self.threshold!r}")
        if self.block is not None and (not isinstance(self.block, int) or self.block < 1):
            raise PassError(f"block must be None or an int >= 1; got {self.block!r}")
        if not isinstance(self.top_k, int) or self.top_k < 1:
            raise PassError(f"top_k must be an int >= 1; got {self.top_k!r}")
        if self.sparse_cap is not None and (
            not isinstance(self.sparse_cap, int) or self.sparse_cap < 1
        ):
            raise PassError(f"sparse_cap must be None or an int >= 1; got {self.sparse_cap!r}")
        if self.accumulate not in ACCUMULATE:
            raise PassError(f"accumulate must be one of {ACCUMULATE}; got {self.accumulate!r}")
        object.__setattr__(self, "edge_measures", tuple(self.edge_measures))
        bad = [m for m in self.edge_measures if m not in self.measures or m in _NO_EDGES]
        if bad or not self.edge_min > 0:
            raise PassError(
                f"edge_measures must be among measures {self.measures} (not {_NO_EDGES}) and "
                f"edge_min > 0; got {self.edge_measures!r}, {self.edge_min!r}"
            )


# ---------------------------------------------------------------- sharding


def latent_axis(mesh: Mesh, n: int) -> str | None:
    """The mesh axis SAE latents go on: the `latents` rule `sae.step` registers (None when the
    axis does not divide `n`)."""
    return jaxlens.sharding.logical_to_spec(("latents",), (n,), mesh, step.LAYOUT)[0]


def acts_sharding(mesh: Mesh, shape: tuple[int, int, int]) -> NamedSharding:
    """`[L, T, N]`: tokens over the batch axes, latents over `latent_axis`."""
    tokens = jaxlens.sharding.batch_sharding(mesh, shape[1], 1).spec[0]
    return NamedSharding(mesh, PartitionSpec(None, tokens, latent_axis(mesh, shape[2])))


def put_latents(x: Any, mesh: Mesh | None) -> jax.Array:
    """Latents `[L, T, N]` on the device(s): tokens on axis 1, so not `put_batch`'s layout;
    on a mesh as `acts_sharding`. A global array (multi-host) is taken as it is."""
    if mesh is None:
        return jnp.asarray(x)
    if isinstance(x, jax.Array) and x.is_fully_addressable is False:
        return x
    return jax.device_put(
        np.asarray(x) if not isinstance(x, jax.Array) else x, acts_sharding(mesh, x.shape)
    )


def _moment_shardings(mesh: Mesh | None, n: int):
    if mesh is None:
        return None
    lat = latent_axis(mesh, n)
    rep = NamedSharding(mesh, PartitionSpec())
    side_b = NamedSharding(mesh, PartitionSpec(None, lat))
    pair = NamedSharding(mesh, PartitionSpec(None, None, lat))
    return stats.Moments(rep, rep, rep, side_b, side_b, pair, rep, side_b, pair)


# ---------------------------------------------------------------- pass 1


@functools.partial(jax.jit, static_argnames="c", donate_argnums=0)
def _first_step(carry, acts, offset, c):
    top_v, top_i = carry["top_values"], carry["top_index"]
    acts = acts.astype(jnp.float32)
    vals, idx = jax.lax.top_k(jnp.swapaxes(acts, 1, 2), min(c, acts.shape[1]))  # [L, N, c']
    vals = jnp.concatenate([top_v, vals], axis=-1)
    idx = jnp.concatenate([top_i, idx.astype(jnp.int32) + offset], axis=-1)
    best, pos = jax.lax.top_k(vals, c)
    return {
        "max": jnp.maximum(carry["max"], acts.max(axis=1)),
        "fires": carry["fires"] + (acts > 0).sum(axis=1, dtype=jnp.int32),
        "top_values": best,
        "top_index": jnp.take_along_axis(idx, pos, axis=-1),
    }


def first_pass(
    source: Source, *, top_contexts: int = 8, mesh: Mesh | None = None, progress: bool = False
) -> LatentSummary:
    """Maxima, firing counts and top activating tokens of every latent (see module docstring)."""
    carry, shape, n_tokens = None, None, 0
    for acts in codes.progress(source(), progress, "maxima"):
        shape = codes.check_batch(acts, shape)
        acts = put_latents(codes.to_dense(acts), mesh)
        if carry is None:
            L, _, N = shape
            carry = {
                "max": jnp.zeros((L, N), jnp.float32),
                "fires": jnp.zeros((L, N), jnp.int32),
                "top_values": jnp.full((L, N, top_contexts), -jnp.inf, jnp.float32),
                "top_index": jnp.full((L, N, top_contexts), -1, jnp.int32),
            }
        carry = _first_step(carry, acts, jnp.int32(n_tokens), top_contexts)
        n_tokens += shape[1]
    if carry is None:
        raise PassError("the source yielded no batch")
    out = {k: np.asarray(v) for k, v in carry.items()}
    out["top_index"] = np.where(np.isfinite(out["top_values"]), out["top_index"], -1)
    out["top_values"] = np.where(np.isfinite(out["top_values"]), out["top_values"], 0.0)
    return LatentSummary(n_tokens=n_tokens, **out)


def choose_accumulate(accumulate: str, summary: LatentSummary, mesh: Mesh | None) -> str:
    """ "dense" or "sparse" for `PassOptions.accumulate`: "auto" is "sparse" on a CPU backend
    without a mesh when fewer than `AUTO_DENSITY` of the latents fire on an average token
    (the first pass's firing counts), else "dense" (accelerators, meshes, dense codes)."""
    if accumulate != "auto":
        return accumulate
    density = float(np.sum(summary.fires)) / max(summary.n_tokens * summary.fires.size, 1)
    cpu = mesh is None and jax.default_backend() == "cpu"
    return "sparse" if cpu and density < AUTO_DENSITY else "dense"


def thresholds(summary: LatentSummary, fraction: float) -> np.ndarray:
    """Per-latent activity thresholds `[L, N]`: `fraction * max` (all 0 for fraction 0)."""
    return (fraction * np.maximum(summary.max, 0.0)).astype(np.float32)


# ---------------------------------------------------------------- pass 2


@functools.lru_cache(maxsize=16)
def _block_fns(
    mesh: Mesh | None,
    n_layers: int,
    n: int,
    width: int,
    measures,
    k: int,
    sparse_cap: int | None = None,
):
    """Jitted accumulate / finish for blocks of `width` earlier latents (any offset)."""
    shardings = _moment_shardings(mesh, n)
    token_measures = tuple(m for m in measures if m != "decoder_cosine")

    def accumulate(m, acts, start, thr):
        if sparse_cap is not None:
            cap = min(sparse_cap, n)
            m = stats.update_sparse(m, acts[:-1], acts[1:], thr[:-1], thr[1:], start, width, cap)
            return m if shardings is None else jax.lax.with_sharding_constraint(m, shardings)
        a = jax.lax.dynamic_slice_in_dim(acts[:-1], start, width, axis=2)
        t_a = jax.lax.dynamic_slice_in_dim(thr[:-1], start, width, axis=1)
        m = stats.update(m, a, acts[1:], t_a, thr[1:])
        return m if shardings is None else jax.lax.with_sharding_constraint(m, shardings)

    def finish(m, start, skip, dec, with_dense):
        out = stats.measures(m, token_measures)
        if "decoder_cosine" in measures:
            d_a = jax.lax.dynamic_slice_in_dim(dec[:-1], start, width, axis=1)
            out["decoder_cosine"] = jax.vmap(stats.decoder_cosine)(d_a, dec[1:])
        rows = {name: jax.lax.top_k(v, min(k, n)) for name, v in out.items()}
        # rows before `skip` belong to the block before (the last block overlaps it)
        fresh = (jnp.arange(width) >= skip)[None, None, :]
        cols = {
            name: jax.lax.top_k(jnp.where(fresh, jnp.swapaxes(v, 1, 2), -jnp.inf), min(k, width))
            for name, v in out.items()
        }
        return (out if with_dense else {}), rows, cols

    return (
        jax.jit(accumulate, donate_argnums=0, out_shardings=shardings),
        jax.jit(finish, static_argnames="with_dense"),
    )


def _merge_cols(run_v, run_i, new_v, new_i, k):
    """Running top-k per later latent merged with one block's (indices already global)."""
    if run_v is None:
        return new_v, new_i
    v = np.concatenate([run_v, new_v], axis=-1)
    i = np.concatenate([run_i, new_i], axis=-1)
    order = np.argsort(-v, axis=-1, kind="stable")[..., :k]
    return np.take_along_axis(v, order, -1), np.take_along_axis(i, order, -1)


@dataclasses.dataclass
class _Collected:
    """The neighbour lists gathered block by block (resumed from saved state), and the dense
    blocks when they are kept."""

    measures: tuple[str, ...]
    k: int
    rows: dict[str, list[np.ndarray]]  # measure -> [values, index], blocks concatenated
    cols: dict[str, tuple[Any, Any]]  # measure -> running (values, index), None before a block
    dense: dict[str, list[np.ndarray]]

    @classmethod
    def resume(cls, state: dict[str, np.ndarray], measures: tuple[str, ...], k: int) -> _Collected:
        rows = {
            m: [state[f"row_values/{m}"], state[f"row_index/{m}"]]
            for m in measures
            if f"row_values/{m}" in state
        }
        cols = {m: (state.get(f"col_values/{m}"), state.get(f"col_index/{m}")) for m in measures}
        return cls(measures, k, rows, cols, {m: [] for m in measures})

    def add(self, name: str, top_r, top_c, keep: slice, start: int) -> None:
        """One block's top-k of measure `name`: its rows from `keep` on, and its columns' lists
        (over those rows only), whose earlier-latent indices count from the block's `start`."""
        rv, ri = (np.asarray(x)[:, keep] for x in top_r)
        if name in self.rows:
            self.rows[name] = [
                np.concatenate([self.rows[name][0], rv], 1),
                np.concatenate([self.rows[name][1], ri], 1),
            ]
        else:
            self.rows[name] = [rv, ri]
        cv, ci = (np.asarray(x) for x in top_c)
        self.cols[name] = _merge_cols(*self.cols[name], cv, ci + start, self.k)

    def state(self, blocks_done: int) -> dict[str, np.ndarray]:
        """What `store.write_atomic` keeps for a resume after `blocks_done` blocks."""
        arrays = {"blocks_done": np.int64(blocks_done)}
        for name in self.measures:
            arrays[f"row_values/{name}"], arrays[f"row_index/{name}"] = self.rows[name]
            arrays[f"col_values/{name}"], arrays[f"col_index/{name}"] = self.cols[name]
        return arrays

    def neighbours(self) -> Neighbours:
        return Neighbours(
            row_values={m: self.rows[m][0] for m in self.measures},
            row_index={m: self.rows[m][1] for m in self.measures},
            col_values={m: self.cols[m][0] for m in self.measures},
            col_index={m: self.cols[m][1] for m in self.measures},
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Blocks:
    """The block layout of one pairwise pass, its jitted functions (`_block_fns`) and where it
    runs."""

    n_layers: int
    n: int
    width: int
    k: int
    starts: list[int]
    accumulate: Callable
    finish: Callable
    mesh: Mesh | None
    progress: bool

    @classmethod
    def plan(cls, options: PassOptions, n_layers: int, n: int, mesh, progress) -> _Blocks:
        width, k = min(options.block or n, n), min(options.top_k, n)
        accumulate, finish = _block_fns(
            mesh, n_layers, n, width, options.measures, k, options.sparse_cap
        )
        return cls(
            n_layers=n_layers,
            n=n,
            width=width,
            k=k,
            starts=list(range(0, n, width)),
            accumulate=accumulate,
            finish=finish,
            mesh=mesh,
            progress=progress,
        )

    def span(self, j: int) -> tuple[int, slice]:
        """Block j's first latent, and the rows it adds: the last block overlaps the one
        before, so it starts earlier and keeps only its rows from `starts[j]` on."""
        start = min(self.starts[j], self.n - self.width)
        return start, slice(self.starts[j] - start, None)

    def sums(self, source: Source, j: int, start: int, thr, n_tokens: int):
        """The pair statistics' sums of block j over one read of the source."""
        m = stats.zeros(self.n_layers - 1, self.width, self.n)
        shardings = _moment_shardings(self.mesh, self.n)
        m = m if shardings is None else jax.device_put(m, shardings)
        desc = f"pairs {j + 1}/{len(self.starts)}"
        for acts in codes.progress(source(), self.progress, desc):
            codes.check_batch(acts, (self.n_layers, 0, self.n))
            acts = put_latents(codes.to_dense(acts), self.mesh)
            m = self.accumulate(m, acts, jnp.int32(start), thr)
        if int(m.n) != n_tokens:
            raise PassError(
                f"block {j}: the source gave {int(m.n)} tokens, the first pass {n_tokens}"
            )
        return m


def _resume_state(out_dir, options: PassOptions, shape, n_tokens: int):
    """`(out_dir as a Path or None, blocks done, saved arrays)` of a resumable pass."""
    if out_dir is None:
        return None, 0, {}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    done, state = store.load_resume(out_dir, store.state_key(options, shape, n_tokens))
    return out_dir, done, state


def pair_pass(
    source: Source,
    summary: LatentSummary,
    options: PassOptions | None = None,
    *,
    decoders: Any = None,
    mesh: Mesh | None = None,
    out_dir: str | os.PathLike | None = None,
    keep_dense: bool = False,
    progress: bool = False,
) -> tuple[Neighbours, dict[str, np.ndarray] | None]:
    """Top-k neighbours of every latent under each measure, for all adjacent layer pairs.

    Args:
        source: see the module docstring; read once per block (once in all when sparse).
        summary: `first_pass` over the same source.
        options: measures, threshold, block size, top_k, dense blocks on disk.
        decoders: `[L, N, D]` decoder rows, needed for `decoder_cosine`.
        mesh: optional mesh (module docstring).
        out_dir: folder for resumable state and dense blocks.
        keep_dense: also return the dense measures `{measure: [P, A, B]}` (small sizes only).

    Returns:
        `(Neighbours, dense or None)`.
    """
    options = PassOptions() if options is None else options
    L, N = summary.max.shape
    if "decoder_cosine" in options.measures and decoders is None:
        raise stats.MeasureError("decoder_cosine needs decoders [L, N, D]")
    if choose_accumulate(options.accumulate, summary, mesh) == "sparse":
        return _sparse_pass(source, summary, options, decoders, out_dir, keep_dense, progress)
    blocks = _Blocks.plan(options, L, N, mesh, progress)
    thr = jnp.asarray(thresholds(summary, options.threshold))
    dec = jnp.zeros((L, N, 1)) if decoders is None else jnp.asarray(decoders, jnp.float32)
    out_dir, done, state = _resume_state(out_dir, options, (L, N), summary.n_tokens)
    got = _Collected.resume(state, options.measures, blocks.k)
    _check_edges(options, out_dir)
    with_dense = keep_dense or (options.dense and out_dir is not None) or options.edge_measures
    for j in range(done, len(blocks.starts)):
        start, keep = blocks.span(j)
        m = blocks.sums(source, j, start, thr, summary.n_tokens)
        skip = jnp.int32(keep.start)
        out, top_r, top_c = blocks.finish(m, jnp.int32(start), skip, dec, with_dense)
        for name in options.measures:
            got.add(name, top_r[name], top_c[name], keep, start)
            if with_dense:
                _keep_dense(
                    got, name, np.asarray(out[name])[:, keep], j, keep_dense, options, out_dir
                )
            if name in options.edge_measures:
                _block_edges(
                    np.asarray(out[name])[:, keep], name, j, blocks.starts[j], options, out_dir
                )
        if out_dir is not None:
            store.write_atomic(out_dir / "neighbours.npz", got.state(j + 1))
    if not keep_dense:
        return got.neighbours(), None
    if done:
        raise PassError("keep_dense needs a pass that ran every block (not a resumed one)")
    return got.neighbours(), {m: np.concatenate(v, axis=1) for m, v in got.dense.items()}


def _check_edges(options: PassOptions, out_dir) -> None:
    if options.edge_measures and out_dir is None:
        raise PassError("edge_measures writes edges under out_dir; give an out_dir")


def _block_edges(block, name, j, row0, options: PassOptions, out_dir) -> None:
    """Block j's pairs at or above `edge_min` (rows counted from `row0`), one file per pair."""
    for p in range(block.shape[0]):
        r, c = np.nonzero(block[p] >= options.edge_min)
        store.save_edges(out_dir, name, p, j, r + row0, c, block[p][r, c])


def _keep_dense(got: _Collected, name, block, j, keep_dense, options, out_dir) -> None:
    """Block j's dense measure: returned (`keep_dense`) and/or saved under `out_dir/dense/`."""
    if keep_dense:
        got.dense[name].append(block)
    if options.dense and out_dir is not None:
        (out_dir / "dense").mkdir(exist_ok=True)
        np.save(out_dir / "dense" / f"{name}_block{j:04d}.npy", block)


def _sparse_pass(source, summary, options, decoders, out_dir, keep_dense, progress):
    """`pair_pass` with `accumulate="sparse"` (`sae.evolution.coactive`): one read of the
    source, no blocks. With `out_dir` the sums so far are saved (`coactive.npz`) about every
    `coactive.CHECKPOINT_TOKENS` tokens, and a rerun continues after the saved batches."""
    L, N = summary.max.shape
    out_dir, done, state = _resume_state(out_dir, options, (L, N), summary.n_tokens)
    k = min(options.top_k, N)
    if done:
        if keep_dense:
            raise PassError("keep_dense needs a pass that ran (not a resumed one)")
        return _Collected.resume(state, options.measures, k).neighbours(), None
    acc = _co_active_sums(source, thresholds(summary, options.threshold), out_dir, progress)
    if acc.n_tokens != summary.n_tokens:
        raise PassError(f"the source gave {acc.n_tokens} tokens, the first pass {summary.n_tokens}")
    with_dense = keep_dense or (options.dense and out_dir is not None)
    _check_edges(options, out_dir)

    def edge_sink(p, pair):
        for name in options.edge_measures:
            store.save_edges(out_dir, name, p, 0, *coactive.edges(pair, name, options.edge_min))

    nb, dense = coactive.neighbours(
        acc, options.measures, k, decoders=decoders, keep_dense=with_dense, edge_sink=edge_sink
    )
    if out_dir is not None:
        (out_dir / "coactive.npz").unlink(missing_ok=True)
        rows = {m: [nb.row_values[m], nb.row_index[m]] for m in options.measures}
        cols = {m: (nb.col_values[m], nb.col_index[m]) for m in options.measures}
        got = _Collected(options.measures, k, rows, cols, {})
        store.write_atomic(out_dir / "neighbours.npz", got.state(1))
        for name in options.measures if options.dense else ():
            (out_dir / "dense").mkdir(exist_ok=True)
            np.save(out_dir / "dense" / f"{name}_block0000.npy", dense[name])
    return nb, dense if keep_dense else None


def _co_active_sums(source, thr: np.ndarray, out_dir, progress) -> coactive.PairAccumulator:
    """The co-active sums over the source, resumed from and checkpointed to
    `out_dir/coactive.npz` (batches already summed are read and skipped)."""
    L, N = thr.shape
    ckpt = None if out_dir is None else out_dir / "coactive.npz"
    acc, skip = coactive.PairAccumulator(thr), 0
    if ckpt is not None and ckpt.exists():
        with np.load(ckpt) as f:
            state = {key: f[key] for key in f.files}
        acc, skip = coactive.PairAccumulator.from_state(thr, state), int(state["batches"])
    saved = acc.n_tokens
    for i, batch in enumerate(codes.progress(source(), progress, "pairs (co-active)")):
        codes.check_batch(batch, (L, 0, N))
        if i < skip:
            continue
        acc.add(codes.to_codes(batch))
        if ckpt is not None and acc.n_tokens - saved >= coactive.CHECKPOINT_TOKENS:
            store.write_atomic(ckpt, {**acc.state(), "batches": np.int64(i + 1)})
            saved = acc.n_tokens
    return acc
