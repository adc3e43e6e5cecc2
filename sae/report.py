"""What a training run reports about its SAEs: a table row per layer and two figures.

- `evaluate_layers(trained, config, batch, *, layers, model=None, site=...)`: per SAE, L0, MSE,
  FVU, dead fraction (`sae.metrics` on held activations `[L, B, D]`) and, when the model is
  given, the CE loss recovered and KL with the SAE spliced in (`sae.spliced_metrics`). Returns
  one dict per layer (the rows of a run's summary table) and the latents' densities.
- `training_figure(history, layers)`: loss, L0, FVU and dead fraction against the step, one
  line per layer, from the `callback` records of `sae.fit`.
- `density_figure(densities)`: histograms of log10 firing densities, dead latents counted apart.

Figures are returned open (matplotlib `Figure`, Agg backend); a script hands them to its run
folder (`jaxlens.runs.RunFolder.figure`), which saves and closes them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sae.config import SAEConfig
from sae.metrics import density_histogram, metrics, spliced_metrics


def evaluate_layers(
    trained: Sequence[Mapping[str, Any]],
    config: SAEConfig,
    batch: np.ndarray,
    *,
    layers: Sequence[int],
    model: tuple[Any, Any, np.ndarray] | None = None,
    site: str = "resid_post",
    spliced_sequences: int = 16,
) -> tuple[list[dict[str, float]], dict[int, np.ndarray]]:
    """Rows `{layer, l0, mse, fvu, dead_fraction[, ce_loss_recovered, kl]}` and densities.

    Args:
        trained: one params dict per layer (what `sae.fit` returns for `[L, B, D]` batches).
        config: their config.
        batch: activations `[L, B, D]` (or `[B, D]` for one SAE) to measure on.
        layers: the model layer of each SAE (row labels and splice sites).
        model: `(model_config, model_params, tokens [S, T])` to splice the SAEs into, or None.
        site: hook site the SAEs read.
        spliced_sequences: token windows used for the spliced CE/KL.
    """
    batch = np.asarray(batch)
    batch = batch if batch.ndim == 3 else batch[None]
    if not len(trained) == len(layers) == batch.shape[0]:
        raise ValueError(
            f"evaluate_layers: {len(trained)} SAEs, {len(layers)} layers and a batch of "
            f"{batch.shape[0]} layers must agree"
        )
    rows, densities = [], {}
    for i, (layer, params) in enumerate(zip(layers, trained, strict=True)):
        m = metrics(params, batch[i], config=config)
        densities[layer] = m.density
        row = {
            "layer": layer,
            "l0": m.l0,
            "mse": m.mse,
            "fvu": m.fvu,
            "dead_fraction": m.dead_fraction,
        }
        if model is not None:
            model_config, model_params, tokens = model
            s = spliced_metrics(
                model_params,
                tokens[:spliced_sequences],
                model_config=model_config,
                sae_params=params,
                sae_config=config,
                site=site,
                layer=layer,
            )
            row["ce_loss_recovered"] = s.ce_loss_recovered
            row["kl"] = s.kl
        rows.append(row)
    return rows, densities


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def training_figure(history: Sequence[Mapping[str, Any]], layers: Sequence[int]):
    """Loss (log scale), L0, FVU and dead fraction per logged step, one line per layer."""
    plt = _pyplot()
    steps = [h["step"] for h in history]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.5))
    for ax, name in zip(axes, ("loss", "l0", "fvu", "dead_fraction"), strict=True):
        for i, layer in enumerate(layers):
            ax.plot(steps, [h[name][i] for h in history], label=f"layer {layer}")
        ax.set_title(name)
        ax.set_xlabel("step")
    axes[0].set_yscale("log")
    axes[0].legend()
    fig.tight_layout()
    return fig


def density_figure(densities: Mapping[int, np.ndarray]):
    """Histogram of log10 firing densities per layer; the legend counts dead latents."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for layer, density in densities.items():
        counts, edges, dead = density_histogram(density)
        ax.stairs(counts, edges, label=f"layer {layer} ({dead} dead)")
    ax.set_xlabel("log10 firing density")
    ax.set_ylabel("latents")
    ax.legend()
    fig.tight_layout()
    return fig
