"""Pair statistics whose memory follows the co-active pairs: exact, host-side, no blocks.

A token activates tens of latents per layer, so it touches `k_a x k_b` latent pairs, not
`N^2`. `PairAccumulator` keeps, per adjacent layer pair, the pair sums `sum_ab` and the
co-activity counts `count_ab` as sparse `N x N` matrices holding only the pairs that ever
co-occur: per batch, from each layer's `Codes` (per token its nonzero latents), the sparse
products `A^T B` and `on(A)^T on(B)` (`scipy.sparse`, float64), merged into the running sums
like a binary counter (a level is merged into the one below when it reaches half its size), so
adding a batch costs about its own co-active pairs. A token with many active latents adds its
own pairs; no batch ever turns dense. The per-latent sums (`sum`, `sum of squares`, active
count) are kept per layer.

A pair that never co-occurs has `sum_ab = 0` and `count_ab = 0`, so its measures are closed-form
functions of per-latent sums: Pearson `-mean_a mean_b / (std_a std_b)` (not zero!), mutual
information from the two activity rates, cosine / Jaccard / sufficiency / necessity 0. Every
value, stored or closed-form, comes from `sae.evolution.stats.measures` (the dense path's
formulas). Top-k over all N pairs of a latent: its stored pairs plus the first k absent pairs
in an order that ranks the closed form (Pearson: by `mean / std` of the other side, ascending
for a latent with a non-negative mean ratio; mutual information: by the other side's active
count, descending, since with no co-activity it grows with either rate; the zeros: by index),
then the k best of those. The result equals the dense path's top-k over all pairs (values to
float rounding; which of several exactly tied latents is listed may differ).

`decoder_cosine` needs no tokens: blocks of decoder rows against all of the other side.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

from sae.evolution import stats
from sae.evolution.codes import Codes
from sae.evolution.store import Neighbours

_DECODER_BLOCK = 2048  # decoder rows per decoder-cosine matmul
CHECKPOINT_TOKENS = 1 << 20  # a resumable pass saves its sums after about this many tokens


def _empty(n: int) -> sp.csr_matrix:
    return sp.csr_matrix((n, n), dtype=np.float64)


class _Levels:
    """Sparse matrices summed like a binary counter: about log2(batches) levels, each at most
    half the size of the one below, so each pair entry is merged O(log) times."""

    def __init__(self, n: int):
        self.n, self.levels = n, []

    def add(self, m: sp.csr_matrix) -> None:
        self.levels.append(m)
        while len(self.levels) > 1 and self.levels[-2].nnz <= 2 * self.levels[-1].nnz:
            top = self.levels.pop()
            self.levels[-1] = (self.levels[-1] + top).tocsr()

    def total(self) -> sp.csr_matrix:
        out = _empty(self.n)
        for m in self.levels:
            out = out + m
        out = sp.csr_matrix(out)
        out.sum_duplicates()
        return out


class PairAccumulator:
    """The sums of `sae.evolution.stats.Moments` for every adjacent layer pair, the pair sums
    over co-active pairs only (module docstring). `thresholds [L, N]`: active = act > it."""

    def __init__(self, thresholds: np.ndarray):
        self.thr = np.asarray(thresholds, np.float64)
        n_layers, n = self.thr.shape
        self.n_tokens = 0
        self.sums = np.zeros((3, n_layers, n))  # per layer: sum, sum of squares, active count
        self.sum_ab = [_Levels(n) for _ in range(n_layers - 1)]
        self.count_ab = [_Levels(n) for _ in range(n_layers - 1)]

    def add(self, codes: Codes) -> None:
        """One batch of `[L, T, N]` codes."""
        values, active = [], []
        for layer, m in enumerate(codes.layers):
            m = sp.csr_matrix(m, dtype=np.float64)
            on = m.copy()
            on.data = (on.data > self.thr[layer][on.indices]).astype(np.float64)
            on.eliminate_zeros()
            n = m.shape[1]
            self.sums[0, layer] += np.bincount(m.indices, m.data, minlength=n)
            self.sums[1, layer] += np.bincount(m.indices, m.data * m.data, minlength=n)
            self.sums[2, layer] += np.bincount(on.indices, minlength=n)
            values.append(m)
            active.append(on)
        for p in range(len(self.sum_ab)):
            self.sum_ab[p].add((values[p].T.tocsr() @ values[p + 1]).tocsr())
            self.count_ab[p].add((active[p].T.tocsr() @ active[p + 1]).tocsr())
        self.n_tokens += codes.shape[1]

    def state(self) -> dict[str, np.ndarray]:
        """Everything summed so far, as arrays (`from_state` reads them back); each pair's
        levels are merged into one first."""
        out = {"n_tokens": np.int64(self.n_tokens), "sums": self.sums}
        for name in ("sum_ab", "count_ab"):
            for p, levels in enumerate(getattr(self, name)):
                m = levels.total()
                levels.levels = [m]
                out[f"{name}{p}/indptr"], out[f"{name}{p}/indices"] = m.indptr, m.indices
                out[f"{name}{p}/data"] = m.data
        return out

    @classmethod
    def from_state(cls, thresholds: np.ndarray, state: dict[str, np.ndarray]) -> PairAccumulator:
        acc = cls(thresholds)
        acc.n_tokens, acc.sums = int(state["n_tokens"]), np.array(state["sums"])
        n = acc.thr.shape[1]
        for name in ("sum_ab", "count_ab"):
            for p, levels in enumerate(getattr(acc, name)):
                arrays = (state[f"{name}{p}/{k}"] for k in ("data", "indices", "indptr"))
                levels.levels = [sp.csr_matrix(tuple(arrays), shape=(n, n))]
        return acc

    def pair(self, p: int) -> _Pair:
        """Layer pair p's stored entries (the union of its summed and counted pairs)."""
        s, c = self.sum_ab[p].total().tocoo(), self.count_ab[p].total().tocoo()
        n = self.thr.shape[1]
        key_s, key_c = s.row.astype(np.int64) * n + s.col, c.row.astype(np.int64) * n + c.col
        keys = key_s  # sorted (canonical CSR); counted pairs are summed pairs unless sums cancel
        at = np.minimum(np.searchsorted(keys, key_c), max(len(keys) - 1, 0))
        extra = key_c[keys[at] != key_c] if len(keys) else key_c
        if len(extra):
            keys = np.sort(np.concatenate([keys, extra]))
        sab, cab = np.zeros(len(keys)), np.zeros(len(keys))
        sab[np.searchsorted(keys, key_s) if len(extra) else slice(None)] = s.data
        cab[np.searchsorted(keys, key_c) if len(extra) else at] = c.data
        a, b = self.sums[:, p], self.sums[:, p + 1]
        return _Pair(self.n_tokens, a, b, keys // n, keys % n, sab, cab)


class _Pair(NamedTuple):
    """One layer pair: per-latent sums `[3, N]` of each side and the stored pairs."""

    n_tokens: int
    a: np.ndarray  # [3, N] sum, sum of squares, active count of the earlier layer
    b: np.ndarray  # [3, N] the same for the later layer
    rows: np.ndarray  # [M] earlier latent of each stored pair
    cols: np.ndarray  # [M] later latent
    sab: np.ndarray  # [M] sum of products
    cab: np.ndarray  # [M] co-activity count
    swapped: bool = False  # rows are the later layer's latents (`transposed`)

    def transposed(self) -> _Pair:
        """The same pairs seen from the later layer (its latents as rows); the measures keep
        their direction (sufficiency stays P(later | earlier))."""
        return _Pair(
            self.n_tokens,
            self.b,
            self.a,
            self.cols,
            self.rows,
            self.sab,
            self.cab,
            not self.swapped,
        )

    def values(self, names, rows, cols, sab=None, cab=None) -> dict[str, np.ndarray]:
        """`stats.measures` at the pairs `(rows, cols)` (absent pairs: sums 0)."""
        zero = np.zeros(len(rows))
        sab, cab = (zero if sab is None else sab), (zero if cab is None else cab)
        col = lambda x: jnp.asarray(x, jnp.float32)[:, None]  # noqa: E731
        cnt = lambda x: jnp.asarray(np.rint(x), jnp.int32)[:, None]  # noqa: E731
        a, b = (
            (self.b[:, cols], self.a[:, rows])
            if self.swapped
            else (self.a[:, rows], self.b[:, cols])
        )
        m = stats.Moments(
            n=jnp.asarray(self.n_tokens, jnp.int32),
            sum_a=col(a[0]),
            sum_aa=col(a[1]),
            sum_b=col(b[0]),
            sum_bb=col(b[1]),
            sum_ab=col(sab)[..., None],
            count_a=cnt(a[2]),
            count_b=cnt(b[2]),
            count_ab=cnt(cab)[..., None],
        )
        return {k: np.asarray(v).reshape(-1) for k, v in stats.measures(m, tuple(names)).items()}

    def dense(self, names) -> dict[str, np.ndarray]:
        """Every pair's measures `[A, B]` (small sizes only)."""
        n_a, n_b = self.a.shape[1], self.b.shape[1]
        rows, cols = np.divmod(np.arange(n_a * n_b), n_b)
        full = self.values(names, rows, cols)
        stored = self.values(names, self.rows, self.cols, self.sab, self.cab)
        out = {}
        for name in names:
            v = np.array(full[name].reshape(n_a, n_b))
            v[self.rows, self.cols] = stored[name]
            out[name] = v
        return out


def _ratio(side: np.ndarray, n_tokens: int) -> np.ndarray:
    """`mean / std` per latent, 0 where `stats` takes the variance as 0 (the Pearson order)."""
    n = max(n_tokens, 1)
    mean, sq = side[0] / n, side[1] / n
    var = np.where(sq - mean**2 > stats._REL_EPS * sq, sq - mean**2, 0.0)
    return np.where(var > 0, mean / np.sqrt(np.where(var > 0, var, 1.0)), 0.0)


def _orders(name: str, pair: _Pair) -> tuple[np.ndarray, np.ndarray]:
    """`(orders [G, B], group [A])`: for each earlier latent, an order of the later latents in
    which the closed form (no co-activity) does not increase (module docstring)."""
    n_a, n_b = pair.a.shape[1], pair.b.shape[1]
    if name == "pearson":
        r_b = _ratio(pair.b, pair.n_tokens)
        orders = np.stack(
            [np.argsort(r_b, kind="stable"), np.argsort(-r_b, kind="stable"), np.arange(n_b)]
        )
        r_a = _ratio(pair.a, pair.n_tokens)
        return orders, np.select([r_a > 0, r_a < 0], [0, 1], 2)  # all 0 for r_a = 0: by index
    if name == "mutual_info":
        return np.argsort(-pair.b[2], kind="stable")[None], np.zeros(n_a, np.int64)
    return np.arange(n_b)[None], np.zeros(n_a, np.int64)


def _absent_candidates(pair: _Pair, orders: np.ndarray, group: np.ndarray, k: int):
    """Per earlier latent, the first k later latents of its order that are not stored pairs:
    `(rows, cols)` of those candidates."""
    n_a, n_b = len(group), orders.shape[1]
    pos = np.empty_like(orders)
    np.put_along_axis(pos, orders, np.arange(n_b)[None], axis=1)
    q = pos[group[pair.rows], pair.cols]
    key = pair.rows * n_b + q
    if np.any(key[1:] < key[:-1]):  # stored pairs come row-major, columns ascending
        sort = np.argsort(key, kind="stable")
        q = q[sort]
    rows = np.sort(pair.rows, kind="stable")
    start = np.searchsorted(rows, np.arange(n_a))
    free_before = q - (np.arange(len(rows)) - start[rows])  # absent latents ahead of each stored
    key = rows * (n_b + 1) + free_before
    m = np.arange(k)
    query = np.arange(n_a)[:, None] * (n_b + 1) + m[None]
    f = m[None] + np.searchsorted(key, query, side="right") - start[:, None]  # [A, k] positions
    ok = f < n_b
    cand_rows = np.broadcast_to(np.arange(n_a)[:, None], f.shape)[ok]
    return cand_rows, orders[group[cand_rows], f[ok]]


def _top_k(rows, cols, vals, n_rows: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best `(value, col)` per row, value descending. One float64 sort key: the row, then
    `1 - value` (every token measure lies in [-1, 1], so rows never mix); exact ties keep the
    candidates' order (stored pairs first)."""
    order = np.argsort(rows * 4.0 + (1.0 - vals), kind="stable")
    rows, cols, vals = rows[order], cols[order], vals[order]
    start = np.searchsorted(rows, np.arange(n_rows))
    rank = np.arange(len(rows)) - start[rows]
    keep = rank < k
    out_v = np.zeros((n_rows, k), np.float32)
    out_i = np.zeros((n_rows, k), np.int32)
    out_v[rows[keep], rank[keep]] = vals[keep]
    out_i[rows[keep], rank[keep]] = cols[keep]
    return out_v, out_i


def top_neighbours(pair: _Pair, names, k: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """`{measure: (values [A, k], index [A, k])}`: each earlier latent's k best later latents
    over all pairs, stored and absent."""
    stored = pair.values(names, pair.rows, pair.cols, pair.sab, pair.cab)
    out = {}
    for name in names:
        c_rows, c_cols = _absent_candidates(pair, *_orders(name, pair), k)
        closed = pair.values((name,), c_rows, c_cols)[name]
        out[name] = _top_k(
            np.concatenate([pair.rows, c_rows]),
            np.concatenate([pair.cols, c_cols]),
            np.concatenate([stored[name], closed]).astype(np.float64),
            pair.a.shape[1],
            k,
        )
    return out


def _decoder_top(w_a: np.ndarray, w_b: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row of `w_a`'s k best decoder cosines against `w_b`, in row blocks."""
    w_b = jnp.asarray(w_b, jnp.float32)
    vals, idx = [], []
    for s in range(0, len(w_a), _DECODER_BLOCK):
        v, i = jax.lax.top_k(stats.decoder_cosine(w_a[s : s + _DECODER_BLOCK], w_b), k)
        vals.append(np.asarray(v))
        idx.append(np.asarray(i, np.int32))
    return np.concatenate(vals), np.concatenate(idx)


def neighbours(
    acc: PairAccumulator,
    measures,
    k: int,
    *,
    decoders: Any = None,
    keep_dense: bool = False,
    edge_sink: Any = None,
) -> tuple[Neighbours, dict[str, np.ndarray] | None]:
    """The top-k lists both ways of every measure and layer pair (and, with `keep_dense`, the
    dense `{measure: [P, N, N]}`); `edge_sink(p, pair)` is called once per layer pair (for
    `edges`), so one pair's stored entries are in memory at a time."""
    token = tuple(m for m in measures if m != "decoder_cosine")
    fields = {f: {m: [] for m in measures} for f in Neighbours._fields}
    dense = {m: [] for m in measures} if keep_dense else None
    for p in range(len(acc.sum_ab)):
        pair = acc.pair(p)
        if edge_sink is not None:
            edge_sink(p, pair)
        got = {
            "row": top_neighbours(pair, token, k),
            "col": top_neighbours(pair.transposed(), token, k),
        }
        if "decoder_cosine" in measures:
            w_a, w_b = np.asarray(decoders[p]), np.asarray(decoders[p + 1])
            got["row"]["decoder_cosine"] = _decoder_top(w_a, w_b, k)
            got["col"]["decoder_cosine"] = _decoder_top(w_b, w_a, k)
        for side in ("row", "col"):
            for m in measures:
                fields[f"{side}_values"][m].append(got[side][m][0])
                fields[f"{side}_index"][m].append(got[side][m][1])
        if keep_dense:
            d = pair.dense(token)
            if "decoder_cosine" in measures:
                d["decoder_cosine"] = np.asarray(stats.decoder_cosine(decoders[p], decoders[p + 1]))
            for m in measures:
                dense[m].append(d[m].astype(np.float32))
    nb = Neighbours(**{f: {m: np.stack(v) for m, v in d.items()} for f, d in fields.items()})
    return nb, None if dense is None else {m: np.stack(v) for m, v in dense.items()}


def edges(pair: _Pair, name: str, min_weight: float) -> tuple[np.ndarray, ...]:
    """`(rows, cols, values)` of every pair whose `name` reaches `min_weight` (> 0), stored or
    absent: absent pairs are 0 under every measure but Pearson, whose `-r_a r_b` can only reach
    it for means of opposite signs (never for non-negative codes)."""
    if name == "mutual_info" or min_weight <= 0:
        raise stats.MeasureError(
            f"full edges need a measure other than mutual_info and a "
            f"min_weight > 0; got {name!r}, {min_weight}"
        )
    stored = pair.values((name,), pair.rows, pair.cols, pair.sab, pair.cab)[name]
    keep = stored >= min_weight
    rows, cols, vals = pair.rows[keep], pair.cols[keep], stored[keep]
    if name == "pearson":
        r_a, r_b = _ratio(pair.a, pair.n_tokens), _ratio(pair.b, pair.n_tokens)
        for sign in (1, -1):
            ia, ib = np.flatnonzero(sign * r_a > 0), np.flatnonzero(sign * r_b < 0)
            ra, cb = np.nonzero(-r_a[ia][:, None] * r_b[ib][None, :] >= min_weight * (1 - 1e-6))
            ra, cb = ia[ra], ib[cb]
            n = pair.b.shape[1]
            absent = ~np.isin(ra * n + cb, pair.rows * n + pair.cols)
            ra, cb = ra[absent], cb[absent]
            v = pair.values((name,), ra, cb)[name]
            ok = v >= min_weight
            rows, cols = np.concatenate([rows, ra[ok]]), np.concatenate([cols, cb[ok]])
            vals = np.concatenate([vals, v[ok]])
    return rows, cols, vals
