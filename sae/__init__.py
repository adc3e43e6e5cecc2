"""sae: sparse autoencoders in JAX, trained sharded over a mesh, saved as SAELens folders.

An SAE is `(config, params)`: a frozen `SAEConfig` and a dict of arrays (`W_enc [D, N]`,
`b_enc`, `W_dec [N, D]`, `b_dec`, `threshold` for JumpReLU-style inference). Modules, one job
each:

- `sae.config`: `SAEConfig`, `FitOptions`.
- `sae.model`: `init`, `encode`, `decode`, the architectures and their training losses.
- `sae.sparse`: the sparse training path of TopK/BatchTopK (dense encoder, sparse rest).
- `sae.step`: the jitted, mesh-sharded train step over L stacked SAEs.
- `sae.train`: `fit` (init from data, loop, logging, orbax checkpoints and resume).
- `sae.activations`, `sae.tokens`: activation sources (arrays, cached shards, a live model).
- `sae.metrics`: L0, FVU, dead latents, densities, CE loss recovered and KL when spliced.
- `sae.saelens_io`: `save_saelens`, `load_saelens`.
"""

from sae.activations import (
    ArraySource,
    CachedActivations,
    ModelActivations,
    write_cached_activations,
)
from sae.config import ARCHITECTURES, FitOptions, SAEConfig, SAEConfigError
from sae.metrics import SAEMetrics, SplicedMetrics, density_histogram, metrics, spliced_metrics
from sae.model import SAEInputError, decode, encode, init, reconstruct
from sae.saelens_io import (
    SAELensFileNotFoundError,
    SAELensFormatError,
    load_saelens,
    save_saelens,
)
from sae.tokens import load_tokens
from sae.train import FitInputError, NonFiniteLossError, fit, fold_scale, geometric_median

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
    "decode",
    "density_histogram",
    "encode",
    "fit",
    "fold_scale",
    "geometric_median",
    "init",
    "load_saelens",
    "load_tokens",
    "metrics",
    "reconstruct",
    "save_saelens",
    "spliced_metrics",
    "write_cached_activations",
]
