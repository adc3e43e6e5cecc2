"""`layer_pair_stats`: dense measure matrices for two arrays of latents, over the streaming pass.

The arrays become a source of `[2, T, W]` batches (W = max(A, B); the narrower side is padded
with latents that never fire, which give 0 and are sliced off), so the matrices come out of the
same jitted, blocked, optionally sharded accumulation that `pair_pass` runs on a model.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from jax.sharding import Mesh

from sae.evolution import stats, stream


def _pad(x: np.ndarray, width: int) -> np.ndarray:
    return np.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, width - x.shape[-1])])


def layer_pair_stats(
    acts_a: Any,
    acts_b: Any,
    *,
    measures: tuple[str, ...] = ("pearson", "jaccard", "sufficiency", "necessity"),
    threshold: float = 0.0,
    decoders: tuple[Any, Any] | None = None,
    batch_size: int = 4096,
    block: int | None = None,
    mesh: Mesh | None = None,
    sparse_cap: int | None = None,
    accumulate: str = "auto",
) -> dict[str, np.ndarray]:
    """Every measure between each latent of `acts_a [T, A]` and each of `acts_b [T, B]`.

    Args:
        acts_a, acts_b: activations of the same T tokens.
        measures: names from `sae.evolution.stats.MEASURES`.
        threshold: active means `act > threshold * (the latent's max)`; 0.0 means `> 0`.
        decoders: `(W_dec_a [A, D], W_dec_b [B, D])`, needed for `decoder_cosine`.
        batch_size: tokens per accumulation step.
        block: earlier-side latents per block (None: all).
        mesh: optional mesh (tokens on the batch axes, latents on the tensor axis).
        sparse_cap: nonzero latents per token for the sparse update (None: dense).
        accumulate: "auto", "dense" or "sparse" (`sae.evolution.stream.PassOptions`).

    Returns:
        `{measure: float32 [A, B]}`.
    """
    stacked, (a, b) = _stacked_pair(acts_a, acts_b, batch_size)  # [2, T, W]
    if mesh is not None:  # the token axis of every batch must split over the batch axes
        n_dev = mesh.shape.get("data", 1) * mesh.shape.get("fsdp", 1)
        batch_size = max(n_dev, batch_size // n_dev * n_dev)
    starts = range(0, stacked.shape[1], batch_size)

    def source():
        return (stacked[:, s : s + batch_size] for s in starts)

    dec = None if decoders is None else _stacked_decoders(decoders, a, b, stacked.shape[2])
    options = stream.PassOptions(
        measures=tuple(measures),
        threshold=threshold,
        block=block,
        top_k=1,
        sparse_cap=sparse_cap,
        accumulate=accumulate,
    )
    summary = stream.first_pass(source, top_contexts=1, mesh=mesh)
    _, dense = stream.pair_pass(source, summary, options, decoders=dec, mesh=mesh, keep_dense=True)
    return {m: v[0, :a, :b] for m, v in dense.items()}


def _stacked_pair(acts_a: Any, acts_b: Any, batch_size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """`[2, T, W]` (both layers zero-padded to the wider one) and `(A, B)`, checked."""
    acts_a, acts_b = np.asarray(acts_a, np.float32), np.asarray(acts_b, np.float32)
    if acts_a.ndim != 2 or acts_b.ndim != 2 or acts_a.shape[0] != acts_b.shape[0]:
        raise stream.PassError(
            f"acts_a and acts_b must be [T, A] and [T, B] over the same tokens; got "
            f"{acts_a.shape} and {acts_b.shape}"
        )
    if not isinstance(batch_size, int) or batch_size < 1:
        raise stream.PassError(f"batch_size must be an int >= 1; got {batch_size!r}")
    a, b = acts_a.shape[1], acts_b.shape[1]
    width = max(a, b)
    return np.stack([_pad(acts_a, width), _pad(acts_b, width)]), (a, b)


def _stacked_decoders(decoders: tuple[Any, Any], a: int, b: int, width: int) -> np.ndarray:
    """`(W_dec_a [A, D], W_dec_b [B, D])` as `[2, W, D]`, checked."""
    w_a, w_b = (np.asarray(w, np.float32) for w in decoders)
    if w_a.shape[0] != a or w_b.shape[0] != b or w_a.shape[1] != w_b.shape[1]:
        raise stats.MeasureError(
            f"decoders must be [A={a}, D] and [B={b}, D]; got {w_a.shape} and {w_b.shape}"
        )
    return np.stack([_pad(w_a.T, width).T, _pad(w_b.T, width).T])
