"""How good an SAE is: sparsity, reconstruction, dead latents, and its effect inside a model.

- `metrics(params, x, *, config)` over activations `x [N, D]` (in chunks, so N may be large):
  L0 (mean active latents per token), MSE, FVU (squared error over the total variance of x, i.e.
  1 - explained variance), the fraction of dead latents (never active on x) and each latent's
  firing density.
- `density_histogram(density)`: counts of log10 firing densities, dead latents apart.
- `spliced_metrics(...)`: the SAE replaces a model's activations at one site and layer (the
  `jaxlens.splice` intervention); next-token cross-entropy with the clean model, with the SAE
  and with the site zero-ablated give the CE loss recovered,
  `(CE_zero - CE_sae) / (CE_zero - CE_clean)`, and the KL divergence from the clean next-token
  distribution to the spliced one, both over the attention mask.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sae import model
from sae.config import SAEConfig


class SAEMetrics(NamedTuple):
    """Reconstruction and sparsity of an SAE on a set of activations.

    Attributes:
        l0: mean number of active latents per token.
        mse: mean squared reconstruction error per token (summed over D).
        fvu: fraction of variance unexplained (sum of squared errors / total variance).
        explained_variance: 1 - fvu.
        dead_fraction: fraction of latents active on no token of x.
        density: Float[N] fraction of tokens each latent is active on.
    """

    l0: float
    mse: float
    fvu: float
    explained_variance: float
    dead_fraction: float
    density: np.ndarray


@functools.partial(jax.jit, static_argnames="config")
def _chunk_sums(params, x, config):
    f = model.activation(model.pre_activations(params, x), params, config)
    x_hat = f @ params["W_dec"] + params["b_dec"]
    active = (f != 0).astype(jnp.float32)
    return {
        "sq_err": jnp.sum(jnp.square(x_hat - x)),
        "sum_x": jnp.sum(x, axis=0),
        "sum_sq_x": jnp.sum(jnp.square(x)),
        "fires": jnp.sum(active, axis=0),
    }


def metrics(
    params: model.Params, x: Any, *, config: SAEConfig, chunk_size: int = 4096
) -> SAEMetrics:
    """L0, MSE, FVU, dead fraction and densities of the SAE on `x [N, D]` (raw space)."""
    model.check_input(x, config)
    if x.ndim != 2 or x.shape[0] == 0:
        raise model.SAEInputError(f"x must be [N, d_in] with N > 0; got shape {x.shape}")
    totals: dict[str, Any] = {}
    n = x.shape[0]
    for start in range(0, n, chunk_size):
        chunk = jnp.asarray(x[start : start + chunk_size], jnp.float32)
        sums = jax.device_get(_chunk_sums(params, chunk, config))
        totals = sums if not totals else {k: totals[k] + v for k, v in sums.items()}
    mean = totals["sum_x"] / n
    total_var = float(totals["sum_sq_x"] - n * np.sum(np.square(mean)))
    fvu = float(totals["sq_err"]) / max(total_var, 1e-30)
    density = np.asarray(totals["fires"]) / n
    return SAEMetrics(
        l0=float(np.sum(totals["fires"]) / n),
        mse=float(totals["sq_err"]) / n,
        fvu=fvu,
        explained_variance=1.0 - fvu,
        dead_fraction=float(np.mean(density == 0)),
        density=density,
    )


def density_histogram(
    density: np.ndarray, *, bins: int = 40, low: float = -8.0
) -> tuple[np.ndarray, np.ndarray, int]:
    """Histogram of log10 densities of live latents: `(counts [bins], edges [bins+1], n_dead)`."""
    density = np.asarray(density)
    live = density[density > 0]
    counts, edges = np.histogram(np.log10(live), bins=bins, range=(low, 0.0))
    return counts, edges, int(np.sum(density <= 0))


@dataclasses.dataclass(frozen=True)
class SpliceFn:
    """The SAE's reconstruction as the static `fn(params, x)` `jaxlens.splice` wants."""

    config: SAEConfig

    def __call__(self, params: model.Params, x: jax.Array) -> jax.Array:
        y = model.reconstruct(params, x.astype(jnp.float32), config=self.config)
        return y.astype(x.dtype)


def _zero(params: Any, x: jax.Array) -> jax.Array:
    del params
    return jnp.zeros_like(x)


class SplicedMetrics(NamedTuple):
    """Next-token cross-entropies (nats/token) and what they give.

    Attributes:
        ce_clean: the model alone.
        ce_spliced: the SAE's reconstruction in place of the site's activations.
        ce_zero_ablation: zeros in place of the site's activations.
        ce_loss_recovered: (ce_zero_ablation - ce_spliced) / (ce_zero_ablation - ce_clean).
        kl: mean KL(clean || spliced) of next-token distributions.
    """

    ce_clean: float
    ce_spliced: float
    ce_zero_ablation: float
    ce_loss_recovered: float
    kl: float


def _next_token_stats(logits, clean_logits, tokens, mask):
    import jaxlens

    logp = jax.nn.log_softmax(logits[:, :-1].astype(jnp.float32), axis=-1)
    clean = jax.nn.log_softmax(clean_logits[:, :-1].astype(jnp.float32), axis=-1)
    weight = (mask[:, :-1] * mask[:, 1:]).astype(jnp.float32)
    nll = -jaxlens.target_logprobs(logits, tokens, mask)
    kl = jnp.sum(jnp.exp(clean) * (clean - logp), axis=-1)
    denom = jnp.maximum(jnp.sum(weight), 1.0)
    return jnp.sum(nll * weight) / denom, jnp.sum(kl * weight) / denom


def spliced_metrics(
    model_params: Any,
    tokens: Any,
    *,
    model_config: Any,
    sae_params: model.Params,
    sae_config: SAEConfig,
    site: str,
    layer: int,
    attention_mask: Any = None,
) -> SplicedMetrics:
    """CE loss recovered and KL when the SAE is spliced into the model at `site`, `layer`."""
    import jaxlens

    tokens = jnp.asarray(tokens, jnp.int32)
    if tokens.ndim != 2 or tokens.shape[1] < 2:
        raise model.SAEInputError(f"tokens must be [B, T] with T >= 2; got shape {tokens.shape}")
    if model_config.d_model != sae_config.d_in:
        raise model.SAEInputError(
            f"the SAE reads d_in={sae_config.d_in} but the model's d_model is "
            f"{model_config.d_model}"
        )
    mask = jnp.ones(tokens.shape, jnp.int32) if attention_mask is None else attention_mask

    def run(interventions):
        return jaxlens.forward(
            model_params,
            tokens,
            config=model_config,
            attention_mask=attention_mask,
            interventions=interventions,
        ).logits

    clean = run(None)
    spliced = run(
        jaxlens.splice(site=site, layer=layer, fn=SpliceFn(sae_config), params=sae_params)
    )
    zeroed = run(jaxlens.splice(site=site, layer=layer, fn=_zero, params=()))
    ce_clean, _ = _next_token_stats(clean, clean, tokens, mask)
    ce_sae, kl = _next_token_stats(spliced, clean, tokens, mask)
    ce_zero, _ = _next_token_stats(zeroed, clean, tokens, mask)
    ce_clean, ce_sae, ce_zero, kl = (float(v) for v in (ce_clean, ce_sae, ce_zero, kl))
    gap = ce_zero - ce_clean
    recovered = (ce_zero - ce_sae) / gap if abs(gap) > 1e-12 else float("nan")
    return SplicedMetrics(ce_clean, ce_sae, ce_zero, recovered, kl)
