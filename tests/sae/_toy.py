"""A known sparse dictionary for recovery tests: G unit directions in D, ~A active per sample."""

from __future__ import annotations

import numpy as np


def toy_dictionary(n_true: int, d: int, seed: int = 0) -> np.ndarray:
    """`[G, D]` random unit directions."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(n_true, d))
    return (w / np.linalg.norm(w, axis=1, keepdims=True)).astype(np.float32)


def toy_activations(dictionary: np.ndarray, n: int, active: float, seed: int = 1) -> np.ndarray:
    """`[n, D]` sums of about `active` dictionary directions with magnitudes in [0.5, 1.5]."""
    rng = np.random.default_rng(seed)
    g = dictionary.shape[0]
    on = rng.random((n, g)) < active / g
    mags = rng.uniform(0.5, 1.5, size=(n, g)) * on
    return (mags @ dictionary).astype(np.float32)


def mean_max_cosine(learned: np.ndarray, dictionary: np.ndarray) -> float:
    """For each true direction, its best cosine with a learned decoder row; averaged."""
    w = learned / np.maximum(np.linalg.norm(learned, axis=1, keepdims=True), 1e-12)
    return float(np.mean(np.max(dictionary @ w.T, axis=1)))
