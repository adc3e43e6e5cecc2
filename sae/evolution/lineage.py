"""Lineage of latents across layers: passed through, vanished, new; AND/OR; unrepresented.

- `classify(pearson [A, B])`: a layer-L latent whose best Pearson partner in L+1 reaches the
  threshold is *passed* through (its partner is that latent), otherwise it *vanished*; a
  layer-(L+1) latent without such a partner in L is *new*. `classify_top` does the same from
  top-k neighbour lists (their first entry is the row/column maximum).
- `and_or(necessity, sufficiency)`: a next-layer latent with exactly two earlier latents at
  necessity >= threshold (it never fires without either) is their AND; with exactly two at
  sufficiency >= threshold (either one makes it fire) their OR. `and_or_top` reads the same off
  the per-later-latent lists, which need k >= 3 to tell "exactly two".
- `turnover`: per layer pair, the share of live latents passed / vanished / new at several
  thresholds; `sankey_figure` draws it.
- `ProjectionStats`: is a vanished latent's direction gone from the next layer, or still there
  but unrepresented by the next SAE? On tokens where it fires, project the next SAE's
  reconstruction error onto its unit decoder direction and compare with what the latent wrote
  (activation x decoder norm). A ratio near 1: the direction is still in the residual stream
  but the next SAE misses it (unrepresented); near 0: it vanished.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


class LineageError(ValueError):
    """Inputs to a lineage function with the wrong shape or too few neighbours."""


def _mask_partner(best_a, arg_a, best_b, threshold):
    passed = best_a >= threshold
    return {
        "passed": passed,
        "vanished": ~passed,
        "new": ~(best_b >= threshold),
        "partner": np.where(passed, arg_a, -1).astype(np.int64),
    }


def classify(pearson: Any, *, threshold: float = 0.95) -> dict[str, np.ndarray]:
    """`{"passed": [A], "vanished": [A], "new": [B], "partner": [A]}` from Pearson `[A, B]`."""
    p = np.asarray(pearson)
    if p.ndim != 2 or 0 in p.shape:
        raise LineageError(f"pearson must be a non-empty [A, B] matrix; got shape {p.shape}")
    return _mask_partner(p.max(1), p.argmax(1), p.max(0), threshold)


def classify_top(row_values, row_index, col_values, *, threshold: float = 0.95):
    """`classify` from top-k lists: `row_* [A, k]` (descending), `col_values [B, k]`."""
    return _mask_partner(
        np.asarray(row_values)[:, 0],
        np.asarray(row_index)[:, 0],
        np.asarray(col_values)[:, 0],
        threshold,
    )


def _exactly_two(values: np.ndarray, index: np.ndarray, threshold: float) -> dict[int, tuple]:
    above = values >= threshold
    out = {}
    for b in np.flatnonzero(above.sum(1) == 2):
        a1, a2 = sorted(int(i) for i in index[b][above[b]])
        out[int(b)] = (a1, a2)
    return out


def and_or(necessity: Any, sufficiency: Any, *, threshold: float = 0.999) -> dict[str, dict]:
    """`{"and": {b: (a1, a2)}, "or": {b: (a1, a2)}}` from `[A, B]` necessity and sufficiency."""
    nec, suf = np.asarray(necessity).T, np.asarray(sufficiency).T  # [B, A]
    if nec.shape != suf.shape or nec.ndim != 2:
        raise LineageError(
            f"necessity and sufficiency must be equal [A, B]; got {nec.T.shape} and {suf.T.shape}"
        )
    idx = np.broadcast_to(np.arange(nec.shape[1]), nec.shape)
    return {"and": _exactly_two(nec, idx, threshold), "or": _exactly_two(suf, idx, threshold)}


def and_or_top(nec_values, nec_index, suf_values, suf_index, *, threshold: float = 0.999):
    """`and_or` from per-later-latent top-k lists `[B, k]` (k >= 3, or k = A)."""
    nec_values, suf_values = np.asarray(nec_values), np.asarray(suf_values)
    if nec_values.shape[1] < 3 and np.any(nec_values[:, -1] >= threshold):
        raise LineageError("and_or_top needs top-k lists with k >= 3 to tell 'exactly two'")
    return {
        "and": _exactly_two(nec_values, np.asarray(nec_index), threshold),
        "or": _exactly_two(suf_values, np.asarray(suf_index), threshold),
    }


def turnover(row_values, col_values, fires, *, thresholds=(0.95, 0.5, 0.4)) -> list[dict]:
    """One row per layer pair: the share of live latents passed, vanished and new.

    Args:
        row_values: `[P, A, k]` Pearson top-k of each earlier latent (descending).
        col_values: `[P, B, k]` Pearson top-k of each later latent.
        fires: `[L, N]` firing counts (a latent that never fires is dead and left out).
        thresholds: Pearson thresholds to report.
    """
    rows = []
    for p in range(np.shape(row_values)[0]):
        live_a, live_b = fires[p] > 0, fires[p + 1] > 0
        row = {"pair": f"{p}->{p + 1}", "live_a": int(live_a.sum()), "live_b": int(live_b.sum())}
        for t in thresholds:
            passed = row_values[p][:, 0] >= t
            new = ~(col_values[p][:, 0] >= t)
            row[f"passed@{t}"] = float(passed[live_a].mean()) if live_a.any() else 0.0
            row[f"new@{t}"] = float(new[live_b].mean()) if live_b.any() else 0.0
        rows.append(row)
    return rows


def sankey_figure(table: list[dict], *, threshold: float = 0.95):
    """Layers as columns of live latents; bands show the passed share flowing to the next layer,
    the vanished share ending and the new share starting (a Sankey-style summary)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.4 * (len(table) + 1) + 2, 4))
    for p, row in enumerate(table):
        passed = row[f"passed@{threshold}"]
        new = row[f"new@{threshold}"]
        ax.bar(p, 1.0, width=0.25, color="#dddddd", edgecolor="k")
        ax.fill_between(
            [p + 0.125, p + 0.875],
            [0, 0],
            [passed, 1 - new],
            color="#4c78a8",
            alpha=0.6,
            linewidth=0,
        )
        ax.fill_between(
            [p + 0.125, p + 0.4], [passed, passed], [1, 1], color="#e45756", alpha=0.5, linewidth=0
        )
        ax.fill_between(
            [p + 0.6, p + 0.875],
            [1 - new, 1 - new],
            [1, 1],
            color="#54a24b",
            alpha=0.5,
            linewidth=0,
        )
        ax.text(p + 0.5, passed / 2, f"{passed:.0%}", ha="center", va="center", fontsize=8)
    ax.bar(len(table), 1.0, width=0.25, color="#dddddd", edgecolor="k")
    ax.set_xticks(range(len(table) + 1), [f"L{i}" for i in range(len(table) + 1)])
    ax.set_ylabel("share of live latents")
    ax.set_title(f"passed (blue), vanished (red), new (green) at Pearson >= {threshold}")
    ax.set_ylim(0, 1.02)
    return fig


@jax.jit
def _projection_step(carry, f, err, w_dec):
    norm = jnp.linalg.norm(w_dec, axis=-1)  # [V]
    unit = w_dec / jnp.maximum(norm, 1e-12)[:, None]
    fires = (f > 0).astype(jnp.float32)  # [T, V]
    proj = err @ unit.T  # [T, V]
    return {
        "fires": carry["fires"] + fires.sum(0),
        "projection": carry["projection"] + (proj * fires).sum(0),
        "written": carry["written"] + (f * norm).sum(0),
    }


class ProjectionStats:
    """Streaming `mean(err . d_hat) / mean(f * |d|)` over tokens where each latent fires."""

    def __init__(self, decoder_rows: Any):
        self.w_dec = jnp.asarray(decoder_rows, jnp.float32)  # [V, D] the vanished latents' rows
        v = self.w_dec.shape[0]
        self.carry = {k: jnp.zeros((v,), jnp.float32) for k in ("fires", "projection", "written")}

    def update(self, f: Any, err: Any) -> None:
        """`f [T, V]` the latents' activations at layer L, `err [T, D]` the next SAE's error."""
        self.carry = _projection_step(self.carry, jnp.asarray(f), jnp.asarray(err), self.w_dec)

    def result(self, *, unrepresented_at: float = 0.5) -> dict[str, np.ndarray]:
        c = {k: np.asarray(v, np.float64) for k, v in self.carry.items()}
        ratio = np.divide(
            c["projection"], c["written"], out=np.zeros_like(c["written"]), where=c["written"] > 0
        )
        return {"ratio": ratio, "fires": c["fires"], "unrepresented": ratio >= unrepresented_at}
