"""Figures of the study (matplotlib, Agg): metrics by layer, dose-response, matrices."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from jaxlens.personality.items import TRAITS  # noqa: E402


def by_layer(values: dict[str, np.ndarray], ylabel: str, title: str):
    """One line per trait over layers."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for trait, v in values.items():
        ax.plot(np.arange(len(v)), v, marker="o", label=trait)
    ax.set_xlabel("layer")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def matrix(
    m: np.ndarray,
    title: str,
    *,
    rows=TRAITS,
    cols=TRAITS,
    vmin=-1.0,
    vmax=1.0,
    xlabel="",
    ylabel="",
):
    fig, ax = plt.subplots(figsize=(4.5, 4))
    im = ax.imshow(m, cmap="RdBu_r", vmin=vmin, vmax=vmax)
    ax.set_xticks(range(len(cols)), cols)
    ax.set_yticks(range(len(rows)), rows)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=8)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def dose_response(
    curves: dict[str, tuple],
    title: str,
    xlabel: str,
    *,
    ylabel: str = "fraction of trait-positive picks",
    ylim: tuple[float, float] | None = (-0.02, 1.02),
):
    """`curves[label] = (strengths, values)`; one line each."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for label, (x, y) in curves.items():
        ax.plot(x, y, marker="o", label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def scatter(x, y, title: str, xlabel: str, ylabel: str):
    fig, ax = plt.subplots(figsize=(4, 3.5))
    ax.scatter(x, y, s=12)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.tight_layout()
    return fig
