"""sae: sparse autoencoders in JAX, trained sharded over a mesh, saved as SAELens folders.

An SAE is `(config, params)`: a frozen `SAEConfig` and a dict of arrays (`W_enc [D, N]`,
`b_enc`, `W_dec [N, D]`, `b_dec`; `log_threshold` for JumpReLU, `threshold` for BatchTopK's
inference rule). SAEs on every layer of a model, one model forward per batch and one jitted,
mesh-sharded step for all of them:

    source = sae.ModelActivations(params, model_config, tokens, layers="all")
    config = sae.SAEConfig(d_in=model_config.d_model, d_sae=16 * model_config.d_model,
                           architecture="topk", k=32)
    mesh = jaxlens.sharding.make_mesh(data=2, tensor=4)      # optional: tokens x latents
    per_layer = sae.fit(source, config, key=key, steps=20_000, batch_size=4096, mesh=mesh)
    # per_layer[i]: the params of layer source.layers[i], in the raw activation space

Modules, one job each:

- `sae.config`: `SAEConfig`, `FitOptions`.
- `sae.model`: `init`, `encode`, `decode`, `threshold`, the architectures and their losses.
- `sae.sparse`: the sparse training path of TopK/BatchTopK (dense encoder, sparse rest).
- `sae.step`: the jitted, mesh-sharded train step over L stacked SAEs.
- `sae.train`: `fit` (init from data, loop, logging, orbax checkpoints and resume),
  `resumed_step`.
- `sae.activations`, `sae.tokens`: activation sources (arrays, cached shards, a live model;
  `ModelActivations.from_file(jaxlens.load_model(path), data, ...)` reads a token dataset with
  the model's own tokenizer).
- `sae.metrics`: L0, FVU, dead latents, densities, CE loss recovered and KL when spliced.
- `sae.report`: a run's per-layer table (`evaluate_layers`) and figures.
- `sae.saelens_io`: `save_saelens`, `load_saelens`.
- `sae.stories`: the plain-text documents of the built-in model's corpus (also the SAE
  analysis's default text).
- `sae.evolution`: how SAE features evolve across layers; its entry point is
  `sae.evolution.run_study(model_dir, out_dir, ...)`.
"""

from sae.activations import (
    ArraySource,
    CachedActivations,
    ModelActivations,
    write_cached_activations,
)
from sae.config import ARCHITECTURES, FitOptions, SAEConfig, SAEConfigError
from sae.metrics import SAEMetrics, SplicedMetrics, density_histogram, metrics, spliced_metrics
from sae.model import SAEInputError, decode, encode, init, reconstruct, threshold
from sae.report import density_figure, evaluate_layers, training_figure
from sae.saelens_io import (
    SAELensFileNotFoundError,
    SAELensFormatError,
    load_saelens,
    save_saelens,
)
from sae.tokens import byte_tokenizer, load_tokens
from sae.train import (
    FitInputError,
    NonFiniteLossError,
    fit,
    fold_scale,
    geometric_median,
    resumed_step,
)

__all__ = [
    "ARCHITECTURES",
    "ArraySource",
    "CachedActivations",
    "FitInputError",
    "FitOptions",
    "ModelActivations",
    "NonFiniteLossError",
    "SAEConfig",
    "SAEConfigError",
    "SAEInputError",
    "SAELensFileNotFoundError",
    "SAELensFormatError",
    "SAEMetrics",
    "SplicedMetrics",
    "byte_tokenizer",
    "decode",
    "density_figure",
    "density_histogram",
    "encode",
    "evaluate_layers",
    "fit",
    "fold_scale",
    "geometric_median",
    "init",
    "load_saelens",
    "load_tokens",
    "metrics",
    "reconstruct",
    "resumed_step",
    "save_saelens",
    "spliced_metrics",
    "threshold",
    "training_figure",
    "write_cached_activations",
]
