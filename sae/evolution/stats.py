"""Sufficient statistics of latent pairs, and the similarity measures computed from them.

Every token measure between a latent `a` of layer L and a latent `b` of layer L+1 is a function
of a few sums over tokens, so a pass over tokens only accumulates those sums (`Moments`), in
any batch order and any split over devices, and the measures come out at the end (`measures`):

    sums        n, sum_a, sum_aa, sum_b, sum_bb, sum_ab     (activations)
    counts      count_a, count_b, count_ab                  (active = above a per-latent threshold)

| measure          | formula                                                                      |
|------------------|------------------------------------------------------------------------------|
| `pearson`        | cov(a, b) / (std a * std b)                                                  |
| `cosine`         | sum_ab / sqrt(sum_aa * sum_bb)          (activation cosine over tokens)      |
| `jaccard`        | count_ab / (count_a + count_b - count_ab)                                     |
| `sufficiency`    | count_ab / count_a = P(b active | a active)                                  |
| `necessity`      | count_ab / count_b = P(a active | b active)                                  |
| `mutual_info`    | mutual information of the two activity bits, in nats                         |
| `decoder_cosine` | cosine of the decoder rows (no tokens needed; `decoder_cosine`)              |

A measure whose denominator is zero (a dead latent, a latent that never varies) is 0, never
NaN. "Active" is `act > threshold` with one threshold per latent: 0 for "fires at all", or a
fraction of the latent's maximum (a first pass collects the maxima).

Arrays carry a leading pair axis P (layer pairs L -> L+1 handled together): `[P, A]` for the
earlier side, `[P, B]` for the later side, `[P, A, B]` for the pair sums. Counts are int32
(exact to 2**31 tokens); a batch's co-activation counts come from a float32 matmul of 0/1
values, exact while a batch has fewer than 2**24 tokens.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

TOKEN_MEASURES = ("pearson", "cosine", "jaccard", "sufficiency", "necessity", "mutual_info")
MEASURES = (*TOKEN_MEASURES, "decoder_cosine")
_REL_EPS = 1e-6  # a variance below this fraction of the mean square is rounding: no variation


class MeasureError(ValueError):
    """An unknown measure name, or a measure asked for without what it needs."""


def check_measures(measures: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The measures as a tuple, each checked against `MEASURES`."""
    measures = tuple(measures)
    bad = [m for m in measures if m not in MEASURES]
    if bad or not measures:
        raise MeasureError(f"measures {bad or '()'} are not known; expected some of {MEASURES}")
    return measures


class Moments(NamedTuple):
    """Sums over tokens for P layer pairs, A earlier-side and B later-side latents."""

    n: Int[Array, ""]
    sum_a: Float[Array, "P A"]
    sum_aa: Float[Array, "P A"]
    sum_b: Float[Array, "P B"]
    sum_bb: Float[Array, "P B"]
    sum_ab: Float[Array, "P A B"]
    count_a: Int[Array, "P A"]
    count_b: Int[Array, "P B"]
    count_ab: Int[Array, "P A B"]


def zeros(p: int, a: int, b: int) -> Moments:
    """Empty sums for P pairs of A x B latents."""
    f, i = jnp.float32, jnp.int32
    return Moments(
        n=jnp.zeros((), i),
        sum_a=jnp.zeros((p, a), f),
        sum_aa=jnp.zeros((p, a), f),
        sum_b=jnp.zeros((p, b), f),
        sum_bb=jnp.zeros((p, b), f),
        sum_ab=jnp.zeros((p, a, b), f),
        count_a=jnp.zeros((p, a), i),
        count_b=jnp.zeros((p, b), i),
        count_ab=jnp.zeros((p, a, b), i),
    )


def _count(x: jax.Array) -> jax.Array:
    return jnp.round(x).astype(jnp.int32)


def update(
    m: Moments,
    a: Float[Array, "P T A"],
    b: Float[Array, "P T B"],
    thr_a: Float[Array, "P A"],
    thr_b: Float[Array, "P B"],
) -> Moments:
    """`m` plus one batch of T tokens (dense: two [A, T] x [T, B] matmuls per pair)."""
    a = a.astype(jnp.float32)
    b = b.astype(jnp.float32)
    on_a = (a > thr_a[:, None, :]).astype(jnp.float32)
    on_b = (b > thr_b[:, None, :]).astype(jnp.float32)
    return Moments(
        n=m.n + a.shape[1],
        sum_a=m.sum_a + a.sum(1),
        sum_aa=m.sum_aa + (a * a).sum(1),
        sum_b=m.sum_b + b.sum(1),
        sum_bb=m.sum_bb + (b * b).sum(1),
        sum_ab=m.sum_ab + jnp.einsum("pta,ptb->pab", a, b),
        count_a=m.count_a + _count(on_a.sum(1)),
        count_b=m.count_b + _count(on_b.sum(1)),
        count_ab=m.count_ab + _count(jnp.einsum("pta,ptb->pab", on_a, on_b)),
    )


def _top_nonzero(x: Float[Array, "T N"], cap: int):
    """The `cap` entries of largest magnitude per token: values and latent indices `[T, cap]`."""
    _, idx = jax.lax.top_k(jnp.abs(x), cap)
    return jnp.take_along_axis(x, idx, axis=-1), idx


def _scatter_pairs(a, b, thr_a, thr_b, start, width, cap):
    """One pair's `(sum_ab, count_ab)` increments `[width, B]` from the top-`cap` entries of
    each token (exact when no token has more than `cap` nonzero latents on either side)."""
    va, ia = _top_nonzero(a, cap)  # [T, c]
    vb, ib = _top_nonzero(b, cap)
    on_a = (va > thr_a[ia]).astype(jnp.int32)
    on_b = (vb > thr_b[ib]).astype(jnp.int32)
    rows = ia - start
    rows = jnp.where((rows >= 0) & (rows < width), rows, width)  # out of the block: dropped
    r = jnp.broadcast_to(rows[:, :, None], rows.shape + (cap,))
    c = jnp.broadcast_to(ib[:, None, :], r.shape)
    shape = (width, b.shape[-1])
    s_ab = jnp.zeros(shape, jnp.float32).at[r, c].add(va[:, :, None] * vb[:, None, :], mode="drop")
    c_ab = (
        jnp.zeros(shape, jnp.int32).at[r, c].add(on_a[:, :, None] * on_b[:, None, :], mode="drop")
    )
    return s_ab, c_ab


def update_sparse(
    m: Moments,
    a: Float[Array, "P T N"],
    b: Float[Array, "P T B"],
    thr_a: Float[Array, "P N"],
    thr_b: Float[Array, "P B"],
    start: Int[Array, ""],
    width: int,
    cap: int,
) -> Moments:
    """`update` for sparse codes: per token, only its nonzero latents' outer product (at most
    `cap` x `cap` scatter-adds instead of A x B multiply-adds). `a` is the earlier side's full
    width N; the block is its latents `start : start + width`. A batch in which some token has
    more than `cap` nonzero latents on either side falls back to the dense `update`."""
    a, b = a.astype(jnp.float32), b.astype(jnp.float32)
    fits = jnp.maximum(jnp.max(jnp.sum(a != 0, -1)), jnp.max(jnp.sum(b != 0, -1))) <= cap
    a_blk = jax.lax.dynamic_slice_in_dim(a, start, width, axis=2)
    t_blk = jax.lax.dynamic_slice_in_dim(thr_a, start, width, axis=1)

    def sparse(m):
        s_ab, c_ab = jax.vmap(_scatter_pairs, in_axes=(0, 0, 0, 0, None, None, None))(
            a, b, thr_a, thr_b, start, width, cap
        )
        on_a = (a_blk > t_blk[:, None, :]).sum(1, dtype=jnp.int32)
        on_b = (b > thr_b[:, None, :]).sum(1, dtype=jnp.int32)
        return Moments(
            n=m.n + a.shape[1],
            sum_a=m.sum_a + a_blk.sum(1),
            sum_aa=m.sum_aa + (a_blk * a_blk).sum(1),
            sum_b=m.sum_b + b.sum(1),
            sum_bb=m.sum_bb + (b * b).sum(1),
            sum_ab=m.sum_ab + s_ab,
            count_a=m.count_a + on_a,
            count_b=m.count_b + on_b,
            count_ab=m.count_ab + c_ab,
        )

    return jax.lax.cond(fits, sparse, lambda m: update(m, a_blk, b, t_blk, thr_b), m)


def _safe_div(num: jax.Array, den: jax.Array) -> jax.Array:
    ok = den > 0
    return jnp.where(ok, num / jnp.where(ok, den, 1.0), 0.0)


def _xlogy_ratio(p: jax.Array, q: jax.Array) -> jax.Array:
    """p * log(p / q), 0 where p == 0 (q > 0 wherever p > 0)."""
    ok = (p > 0) & (q > 0)
    return jnp.where(ok, p * jnp.log(jnp.where(ok, p, 1.0) / jnp.where(ok, q, 1.0)), 0.0)


def _pearson(m: Moments, n: jax.Array) -> jax.Array:
    mean_a, mean_b = m.sum_a / n, m.sum_b / n
    sq_a, sq_b = m.sum_aa / n, m.sum_bb / n
    var_a = jnp.where(sq_a - mean_a**2 > _REL_EPS * sq_a, sq_a - mean_a**2, 0.0)
    var_b = jnp.where(sq_b - mean_b**2 > _REL_EPS * sq_b, sq_b - mean_b**2, 0.0)
    cov = m.sum_ab / n - mean_a[..., :, None] * mean_b[..., None, :]
    den = jnp.sqrt(var_a[..., :, None] * var_b[..., None, :])
    return jnp.clip(_safe_div(cov, den), -1.0, 1.0)


def _mutual_info(m: Moments, n: jax.Array) -> jax.Array:
    p11 = m.count_ab / n
    pa = (m.count_a / n)[..., :, None]
    pb = (m.count_b / n)[..., None, :]
    p10, p01 = pa - p11, pb - p11
    p00 = 1.0 - pa - pb + p11
    mi = (
        _xlogy_ratio(p11, pa * pb)
        + _xlogy_ratio(p10, pa * (1 - pb))
        + _xlogy_ratio(p01, (1 - pa) * pb)
        + _xlogy_ratio(p00, (1 - pa) * (1 - pb))
    )
    return jnp.maximum(mi, 0.0)


def measures(m: Moments, names: tuple[str, ...]) -> dict[str, Float[Array, "P A B"]]:
    """The token measures `names` (see the module table) from accumulated sums."""
    n = jnp.maximum(m.n, 1).astype(jnp.float32)
    c_ab = m.count_ab.astype(jnp.float32)
    c_a = m.count_a.astype(jnp.float32)[..., :, None]
    c_b = m.count_b.astype(jnp.float32)[..., None, :]
    out = {}
    for name in names:
        if name == "pearson":
            out[name] = _pearson(m, n)
        elif name == "cosine":
            den = jnp.sqrt(m.sum_aa[..., :, None] * m.sum_bb[..., None, :])
            out[name] = jnp.clip(_safe_div(m.sum_ab, den), -1.0, 1.0)
        elif name == "jaccard":
            out[name] = _safe_div(c_ab, c_a + c_b - c_ab)
        elif name == "sufficiency":
            out[name] = _safe_div(c_ab, c_a * jnp.ones_like(c_ab))
        elif name == "necessity":
            out[name] = _safe_div(c_ab, c_b * jnp.ones_like(c_ab))
        elif name == "mutual_info":
            out[name] = _mutual_info(m, n)
        else:
            raise MeasureError(f"{name!r} is not a token measure; expected one of {TOKEN_MEASURES}")
    return out


def decoder_cosine(w_a: Float[Array, "A D"], w_b: Float[Array, "B D"]) -> Float[Array, "A B"]:
    """Cosine between every decoder row of one SAE and every row of the next (0 for a zero row)."""
    w_a = jnp.asarray(w_a, jnp.float32)
    w_b = jnp.asarray(w_b, jnp.float32)
    na = jnp.linalg.norm(w_a, axis=-1, keepdims=True)
    nb = jnp.linalg.norm(w_b, axis=-1, keepdims=True)
    u_a = _safe_div(w_a, na * jnp.ones_like(w_a))
    u_b = _safe_div(w_b, nb * jnp.ones_like(w_b))
    return u_a @ u_b.T
