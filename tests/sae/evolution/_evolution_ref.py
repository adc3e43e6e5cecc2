"""Dense numpy (float64) references for the cross-layer measures, written from the definitions."""

from __future__ import annotations

import numpy as np


def active(x: np.ndarray, fraction: float) -> np.ndarray:
    return x > fraction * np.maximum(x.max(0), 0.0)


def pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    ca, cb = a - a.mean(0), b - b.mean(0)
    sa, sb = np.sqrt((ca**2).sum(0)), np.sqrt((cb**2).sum(0))
    out = np.zeros((a.shape[1], b.shape[1]))
    for i in range(a.shape[1]):
        for j in range(b.shape[1]):
            if sa[i] > 0 and sb[j] > 0:
                out[i, j] = (ca[:, i] * cb[:, j]).sum() / (sa[i] * sb[j])
    return out


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    out = np.zeros((a.shape[1], b.shape[1]))
    for i in range(a.shape[1]):
        for j in range(b.shape[1]):
            den = np.linalg.norm(a[:, i]) * np.linalg.norm(b[:, j])
            out[i, j] = a[:, i] @ b[:, j] / den if den > 0 else 0.0
    return out


def binary(a: np.ndarray, b: np.ndarray, fraction: float) -> dict[str, np.ndarray]:
    """Jaccard, sufficiency P(b|a), necessity P(a|b), mutual information (nats)."""
    xa, xb = active(a, fraction), active(b, fraction)
    n = len(a)
    out = {
        k: np.zeros((a.shape[1], b.shape[1]))
        for k in ("jaccard", "sufficiency", "necessity", "mutual_info")
    }
    for i in range(a.shape[1]):
        for j in range(b.shape[1]):
            both = np.sum(xa[:, i] & xb[:, j])
            either = np.sum(xa[:, i] | xb[:, j])
            out["jaccard"][i, j] = both / either if either else 0.0
            out["sufficiency"][i, j] = both / xa[:, i].sum() if xa[:, i].any() else 0.0
            out["necessity"][i, j] = both / xb[:, j].sum() if xb[:, j].any() else 0.0
            mi = 0.0
            for u in (0, 1):
                for v in (0, 1):
                    pxy = np.sum((xa[:, i] == u) & (xb[:, j] == v)) / n
                    px, py = np.mean(xa[:, i] == u), np.mean(xb[:, j] == v)
                    if pxy > 0:
                        mi += pxy * np.log(pxy / (px * py))
            out["mutual_info"][i, j] = mi
    return out


def decoder_cosine(w_a: np.ndarray, w_b: np.ndarray) -> np.ndarray:
    w_a, w_b = w_a.astype(np.float64), w_b.astype(np.float64)
    na, nb = np.linalg.norm(w_a, axis=1), np.linalg.norm(w_b, axis=1)
    out = np.zeros((len(w_a), len(w_b)))
    for i in range(len(w_a)):
        for j in range(len(w_b)):
            if na[i] > 0 and nb[j] > 0:
                out[i, j] = w_a[i] @ w_b[j] / (na[i] * nb[j])
    return out


def all_measures(a, b, fraction=0.0, w_a=None, w_b=None) -> dict[str, np.ndarray]:
    out = {"pearson": pearson(a, b), "cosine": cosine(a, b), **binary(a, b, fraction)}
    if w_a is not None:
        out["decoder_cosine"] = decoder_cosine(w_a, w_b)
    return out


def sparse_latents(rng, n: int, width: int, density: float = 0.3) -> np.ndarray:
    """`[n, width]` non-negative activations, each latent firing on about `density` of tokens."""
    on = rng.random((n, width)) < density
    return (on * rng.uniform(0.1, 2.0, (n, width))).astype(np.float32)


def jaccard_like(a: np.ndarray, b: np.ndarray, fraction: float) -> np.ndarray:
    """Jaccard of the activity bits `[A, B]`, vectorised (0 where neither fires)."""
    xa, xb = active(a, fraction).astype(np.float64), active(b, fraction).astype(np.float64)
    both = xa.T @ xb
    either = xa.sum(0)[:, None] + xb.sum(0)[None, :] - both
    return np.where(either > 0, both / np.where(either > 0, either, 1.0), 0.0)


def pearson_fast(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """`pearson`, vectorised (0 where either side never varies)."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    ca, cb = a - a.mean(0), b - b.mean(0)
    sa, sb = np.sqrt((ca**2).sum(0)), np.sqrt((cb**2).sum(0))
    den = sa[:, None] * sb[None, :]
    return np.where(den > 0, (ca.T @ cb) / np.where(den > 0, den, 1.0), 0.0)
