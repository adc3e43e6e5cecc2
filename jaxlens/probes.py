"""Linear probes over layers: ridge regression of a scalar label on activations.

`fit(acts [L, N, D], y [N], groups=...)` fits one probe per layer, all layers at once:

1. **Split by group.** Groups (e.g. characters; default: one group per sample) are permuted with
   `seed`; the first `test_fraction` of them are held out. A group never straddles train and
   test, and the k-fold CV below splits the training groups the same way.
2. **Ridge over an alpha grid, in closed form.** Per layer, features are centred on the
   training mean and one eigendecomposition gives every alpha's solution at once: of the Gram
   matrix `X X^T` when N < D (`w = X^T U diag(1 / (lam + alpha)) U^T y`), else of `X^T X`
   (`w = V diag(1 / (lam + alpha)) V^T X^T y`). The grid is relative to each layer's scale
   (`mean(lam) * 10^[-4..3]`), so it suits activations of any norm. `jnp.linalg.eigh`
   batches over layers: no Python loop over layers (XLA's CPU SVD is ~10x slower than eigh).
3. **Choose alpha per layer** by the mean squared error over `folds` group folds, refit on all
   training samples, and report held-out R^2 and Spearman per layer.

`method="score_mean"` is the score-averaged regression: training activations are first
averaged within each distinct label value, and the ridge fit runs on those means (alpha still
chosen by CV on held-out samples).

Axes: `L` layers, `N` samples, `D` activation width (`n`, `m`: the samples of one split,
`A` the alpha grid). `Probe.directions [L, D]` are the unit-norm weight vectors (the steering
directions); `predict` applies the fitted probes. `auc` and `cosines` are the usual checks on
directions. `save` and `load` keep named probes in one `.npz` of plain arrays (no pickles).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int

METHODS = ("ridge", "score_mean")
ALPHA_EXPONENTS = np.linspace(-4.0, 3.0, 15)


class ProbeError(ValueError):
    """Probe inputs of the wrong shape or settings outside their range."""


class Probe(NamedTuple):
    """One fitted linear probe per layer (arrays are NumPy).

    directions [L, D] unit-norm weights; coef [L, D] raw weights; intercept [L];
    mean [L, D] training feature mean; alpha [L] chosen regularisation; cv_mse [L, A];
    test_r2 [L], test_spearman [L], train_spearman [L]; train_index, test_index [n] sample ids.
    """

    directions: Float[np.ndarray, "L D"]
    coef: Float[np.ndarray, "L D"]
    intercept: Float[np.ndarray, " L"]
    mean: Float[np.ndarray, "L D"]
    alpha: Float[np.ndarray, " L"]
    cv_mse: Float[np.ndarray, "L A"]
    test_r2: Float[np.ndarray, " L"]
    test_spearman: Float[np.ndarray, " L"]
    train_spearman: Float[np.ndarray, " L"]
    train_index: Int[np.ndarray, " n"]
    test_index: Int[np.ndarray, " m"]

    @property
    def best_layer(self) -> int:
        """The layer with the highest held-out Spearman (lowest CV error if none is defined,
        e.g. when the held-out labels are all equal)."""
        if np.isfinite(self.test_spearman).any():
            return int(np.nanargmax(self.test_spearman))
        return int(np.argmin(self.cv_mse.min(axis=1)))

    def predict(self, acts: Float[ArrayLike, "L N D"]) -> Float[np.ndarray, "L N"]:
        """`acts [L, N, D]` -> predictions `[L, N]`."""
        a = np.asarray(acts, np.float64)
        return np.einsum("lnd,ld->ln", a - self.mean[:, None], self.coef) + self.intercept[:, None]


def rank(x: Float[ArrayLike, "*batch N"]) -> Float[np.ndarray, "*batch N"]:
    """Ranks along the last axis, ties given their average rank (1-based)."""
    x = np.asarray(x, np.float64)
    order = np.argsort(x, axis=-1, kind="stable")
    sorted_x = np.take_along_axis(x, order, -1)
    ranks = np.empty_like(x)
    flat_x = sorted_x.reshape(-1, x.shape[-1])
    flat_o = order.reshape(-1, x.shape[-1])
    flat_r = ranks.reshape(-1, x.shape[-1])
    for row in range(flat_x.shape[0]):
        _, start, counts = np.unique(flat_x[row], return_index=True, return_counts=True)
        avg = start + (counts - 1) / 2.0 + 1.0
        flat_r[row, flat_o[row]] = np.repeat(avg, counts)
    return flat_r.reshape(x.shape)


def spearman(
    pred: Float[ArrayLike, "*batch N"], y: Float[ArrayLike, " N"]
) -> Float[np.ndarray, "*batch"]:
    """Spearman correlation of each row of `pred [..., N]` with `y [N]` (NaN if constant)."""
    rp, ry = rank(pred), rank(np.asarray(y))
    rp = rp - rp.mean(-1, keepdims=True)
    ry = ry - ry.mean()
    denom = np.sqrt((rp**2).sum(-1) * (ry**2).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (rp * ry).sum(-1) / np.where(denom > 0, denom, 1), np.nan)


def r2(
    pred: Float[ArrayLike, "*batch N"], y: Float[ArrayLike, " N"]
) -> Float[np.ndarray, "*batch"]:
    """Coefficient of determination of each row of `pred [..., N]` against `y [N]`."""
    y = np.asarray(y, np.float64)
    ss = ((y - y.mean()) ** 2).sum()
    return 1.0 - ((np.asarray(pred) - y) ** 2).sum(-1) / max(ss, 1e-30)


@jax.jit
def _ridge_path(
    x_train: Float[Array, "L n D"],
    y_train: Float[Array, " n"],
    w_train: Float[Array, " n"],
    x_eval: Float[Array, "L m D"],
    rel_alphas: Float[Array, " A"],
):
    """Weighted ridge for every alpha at every layer (rows with weight 0 do not count, so
    every fold has the same shapes and one compiled program serves them all).

    x_train [L, n, D], y_train [n], w_train [n], x_eval [L, m, D], rel_alphas [A] ->
    (coef [L, A, D], intercept [], mean [L, D], pred [L, A, m], alphas [L, A]).
    """
    w = w_train / jnp.sum(w_train)
    mean = jnp.einsum("n,lnd->ld", w, x_train)
    y_mean = jnp.sum(w * y_train)
    root = jnp.sqrt(w_train)
    xc = (x_train - mean[:, None]) * root[None, :, None]  # [L, n, D]
    yc = (y_train - y_mean) * root  # [n]
    n, d = xc.shape[1:]
    if n < d:  # dual: eigenvectors of the Gram matrix X X^T [n, n]
        lam, u = jnp.linalg.eigh(jnp.einsum("lnd,lmd->lnm", xc, xc))
        proj = jnp.einsum("lnk,n->lk", u, yc)  # U^T y
        back = jnp.einsum("lnd,lnk->lkd", xc, u)  # X^T U, one row per eigenvector
    else:  # primal: eigenvectors of X^T X [D, D]
        lam, v = jnp.linalg.eigh(jnp.einsum("lnd,lne->lde", xc, xc))
        proj = jnp.einsum("lnd,ldk,n->lk", xc, v, yc)  # V^T X^T y
        back = jnp.swapaxes(v, 1, 2)
    lam = jnp.maximum(lam, 0.0)  # [L, k] = squared singular values
    alphas = jnp.sum(lam, axis=1, keepdims=True) / jnp.sum(w_train > 0) * rel_alphas[None]
    shrink = 1.0 / (lam[:, None, :] + alphas[:, :, None])  # [L, A, k]
    coef = jnp.einsum("lak,lk,lkd->lad", shrink, proj, back)
    pred = jnp.einsum("lmd,lad->lam", x_eval - mean[:, None], coef) + y_mean
    return coef, y_mean, mean, pred, alphas


def _train_rows(x, y, rows, method, values):
    """Training matrix, labels and weights: the samples `rows` (weight 1, others 0), or for
    "score_mean" their averages within each label value in `values` (absent values weight 0).
    """
    n = len(y)
    if method == "ridge":
        weight = np.zeros(n)
        weight[rows] = 1.0
        return x, jnp.asarray(y, jnp.float32), jnp.asarray(weight, jnp.float32)
    onehot = np.zeros((len(values), n))
    onehot[np.searchsorted(values, y[rows]), rows] = 1.0
    counts = onehot.sum(1, keepdims=True)
    onehot /= np.maximum(counts, 1.0)
    means = jnp.einsum("kn,lnd->lkd", jnp.asarray(onehot, x.dtype), x)
    return means, jnp.asarray(values, jnp.float32), jnp.asarray(counts[:, 0] > 0, jnp.float32)


def group_split(
    groups: ArrayLike, test_fraction: float, seed: int
) -> tuple[Int[np.ndarray, " n"], Int[np.ndarray, " m"]]:
    """Sample indices `(train, test)`; whole groups go to one side."""
    groups = np.asarray(groups)
    unique = np.unique(groups)
    perm = np.random.default_rng(seed).permutation(len(unique))
    n_test = int(round(test_fraction * len(unique)))
    if not 1 <= n_test < len(unique):
        raise ProbeError(
            f"test_fraction={test_fraction} of {len(unique)} groups leaves an empty side"
        )
    test_groups = unique[perm[:n_test]]
    is_test = np.isin(groups, test_groups)
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)


def _check(acts, y, groups, method, folds, test_fraction):
    if acts.ndim != 3:
        raise ProbeError(f"acts: expected [L, N, D], got shape {acts.shape}")
    if y.shape != (acts.shape[1],):
        raise ProbeError(f"y: expected shape ({acts.shape[1]},) to match acts, got {y.shape}")
    if groups.shape != y.shape:
        raise ProbeError(f"groups: expected shape {y.shape}, got {groups.shape}")
    if method not in METHODS:
        raise ProbeError(f"method={method!r}: expected one of {METHODS}")
    if folds < 2:
        raise ProbeError(f"folds={folds}: expected >= 2")
    if not 0 < test_fraction < 1:
        raise ProbeError(f"test_fraction={test_fraction}: expected a value in (0, 1)")


def fit(
    acts: Float[ArrayLike, "L N D"],
    y: Float[ArrayLike, " N"],
    *,
    groups: ArrayLike | None = None,
    method: str = "ridge",
    folds: int = 5,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> Probe:
    """Fits a linear probe of `y [N]` on `acts [L, N, D]` at every layer (see module doc)."""
    acts = jnp.asarray(acts, jnp.float32)
    y = np.asarray(y, np.float64)
    groups = np.arange(len(y)) if groups is None else np.asarray(groups)
    _check(acts, y, groups, method, folds, test_fraction)
    train, test = group_split(groups, test_fraction, seed)
    rel = jnp.asarray(10.0**ALPHA_EXPONENTS, jnp.float32)
    # k folds over the training groups
    train_groups = np.unique(groups[train])
    k = min(folds, len(train_groups))
    shuffled = np.random.default_rng(seed + 1).permutation(train_groups)
    fold_of = {g: i for i, g in enumerate(shuffled)}
    fold = np.array([fold_of[g] % k for g in groups[train]])
    sq_err = np.zeros((acts.shape[0], len(rel)))
    values = np.unique(y)
    for f in range(k):
        tr, va = train[fold != f], train[fold == f]
        xt, yt, wt = _train_rows(acts, y, tr, method, values)
        pred = np.asarray(_ridge_path(xt, yt, wt, acts, rel)[3])[:, :, va]  # [L, A, m]
        sq_err += ((pred - y[va]) ** 2).sum(-1)
    cv_mse = sq_err / len(train)
    best = cv_mse.argmin(axis=1)  # [L]
    xt, yt, wt = _train_rows(acts, y, train, method, values)
    coef, intercept, mean, pred, alphas = (
        np.asarray(a) for a in _ridge_path(xt, yt, wt, acts, rel)
    )
    layer = np.arange(acts.shape[0])
    coef, intercept = coef[layer, best].astype(np.float64), np.full(len(layer), intercept)
    pred_test = pred[layer, best][:, test]  # [L, m]
    train_pred = np.einsum("lnd,ld->ln", np.asarray(acts[:, train]) - mean[:, None], coef)
    norms = np.linalg.norm(coef, axis=-1, keepdims=True)
    return Probe(
        directions=coef / np.maximum(norms, 1e-30),
        coef=coef,
        intercept=intercept.astype(np.float64),
        mean=mean.astype(np.float64),
        alpha=alphas[layer, best],
        cv_mse=cv_mse,
        test_r2=r2(pred_test, y[test]),
        test_spearman=spearman(pred_test, y[test]),
        train_spearman=spearman(train_pred, y[train]),
        train_index=train,
        test_index=test,
    )


def auc(
    scores_pos: Float[ArrayLike, "*batch pos"], scores_neg: Float[ArrayLike, "*batch neg"]
) -> Float[np.ndarray, "*batch"]:
    """Area under the ROC curve: how often a score of `scores_pos [..., pos]` is above one of
    `scores_neg [..., neg]` (ties count 1/2)."""
    p = np.asarray(scores_pos, np.float64)[..., :, None]
    q = np.asarray(scores_neg, np.float64)[..., None, :]
    return ((p > q) + 0.5 * (p == q)).mean(axis=(-2, -1))


def cosines(directions: Float[ArrayLike, "probes L D"]) -> Float[np.ndarray, "L probes probes"]:
    """`directions [probes, L, D]` -> cosine matrix per layer `[L, probes, probes]`."""
    d = np.asarray(directions, np.float64)
    d = d / np.maximum(np.linalg.norm(d, axis=-1, keepdims=True), 1e-30)
    return np.einsum("kld,jld->lkj", d, d)


def save(path: str | os.PathLike, named: Mapping[str, Probe]) -> None:
    """Writes probes by name (e.g. one per trait) to one `.npz`, keys `<name>/<field>`."""
    arrays = {f"{n}/{k}": np.asarray(v) for n, p in named.items() for k, v in p._asdict().items()}
    with open(path, "wb") as f:  # np.savez would append ".npz" to a path without it
        np.savez(f, **arrays)


def load(path: str | os.PathLike) -> dict[str, Probe]:
    """Reads probes written by `save`; a file missing any field raises `ProbeError`."""
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    names = sorted({k.split("/", 1)[0] for k in arrays if "/" in k})
    if not names:
        raise ProbeError(f"{path}: no probes found (expected keys <name>/<field>)")
    out = {}
    for n in names:
        missing = [k for k in Probe._fields if f"{n}/{k}" not in arrays]
        if missing:
            raise ProbeError(
                f"{path}: probe {n!r} lacks {missing} (expected all of {Probe._fields})"
            )
        out[n] = Probe(**{k: arrays[f"{n}/{k}"] for k in Probe._fields})
    return out
