"""Configurations of a sparse autoencoder and of its training run.

Two frozen, keyword-only dataclasses, one per concern:

- `SAEConfig` says what the SAE *is* (sizes, architecture and the architecture's loss knobs).
  It is hashable, so it rides through `jax.jit` as a static argument.
- `FitOptions` says how `sae.fit` trains it (schedule, optimiser, checkpoints), beyond the few
  arguments `fit` takes directly (`steps`, `batch_size`, `lr`, `mesh`).

Every field is checked in `__post_init__`; a bad value raises `SAEConfigError` (a `ValueError`)
naming the field and what it accepts.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import jaxlens

ARCHITECTURES = ("relu", "topk", "batchtopk", "jumprelu")
Architecture = Literal["relu", "topk", "batchtopk", "jumprelu"]


class SAEConfigError(ValueError):
    """A configuration field has a value outside what it accepts."""


def _check(ok: bool, field: str, expected: str, got: object) -> None:
    if not ok:
        raise SAEConfigError(f"{field} must be {expected}; got {got!r}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class SAEConfig:
    """What a sparse autoencoder is: sizes, architecture, and its loss's knobs.

    Attributes:
        d_in: width D of the activations it reads (a model's d_model).
        d_sae: number N of latents.
        architecture: `relu` (L1 penalty on latents times decoder row norms), `topk` (keep the k
            largest pre-activations per token, AuxK loss for dead latents), `batchtopk` (keep the
            batch_size * k largest over the whole batch; a learned threshold replaces it at
            inference, exported as JumpReLU) or `jumprelu` (threshold per latent trained with a
            straight-through estimator, L0 penalty).
        k: active latents per token for `topk` / `batchtopk` (mean per token for `batchtopk`).
        l1_coefficient: weight of the L1 penalty (`relu`), reached after the sparsity warm-up.
        l0_coefficient: weight of the L0 penalty (`jumprelu`), reached after the sparsity warm-up.
        jumprelu_bandwidth: width of the rectangle kernel of JumpReLU's straight-through
            estimator, in units of (normalised) pre-activation.
        jumprelu_init_threshold: initial threshold of every JumpReLU latent.
        aux_k: latents the AuxK loss uses to model the residual (`topk`/`batchtopk`);
            None means d_in // 2 (capped at d_sae), 0 turns AuxK off.
        aux_k_coefficient: weight of the AuxK loss (Gao et al. use 1/32).
        dead_tokens_threshold: a latent that has not fired for this many training tokens is
            dead (AuxK revives dead latents; `metrics` and the training log count them).
        batchtopk_row_cap: most latents one token may keep under `batchtopk` (the batch-level
            selection runs over each row's top `batchtopk_row_cap` candidates, which is exact
            unless a token would keep more); None means 4 * k (capped at d_sae).
        batchtopk_threshold_momentum: momentum of the running estimate of the batch-level
            threshold (the smallest kept activation of each batch) that `batchtopk` uses at
            inference.
        normalize_decoder: keep decoder rows at unit norm during training (and remove the
            gradient component along them). None means True for `topk`/`batchtopk` and False for
            `relu` (its L1 term already weighs latents by decoder norm) and `jumprelu`.
        normalize_activations: train on activations scaled to unit mean squared norm (the scale
            comes from a sample and is folded back into the weights when `fit` returns).
        b_dec_init: `geometric_median`, `mean` or `zeros`: where the decoder bias starts (from a
            sample of the training activations).
        dtype: dtype of the params and of the training arithmetic: any spelling
            `jaxlens.canonical_dtype` accepts (`"bf16"`, `np.float32`, `jnp.bfloat16`, ...),
            stored as `"float32"`, `"bfloat16"` or `"float16"`.
    """

    d_in: int
    d_sae: int
    architecture: Architecture
    k: int | None = None
    l1_coefficient: float = 1.0
    l0_coefficient: float = 1e-3
    jumprelu_bandwidth: float = 0.05
    jumprelu_init_threshold: float = 0.05
    aux_k: int | None = None
    aux_k_coefficient: float = 1.0 / 32.0
    dead_tokens_threshold: int = 10_000_000
    batchtopk_row_cap: int | None = None
    batchtopk_threshold_momentum: float = 0.99
    normalize_decoder: bool | None = None
    normalize_activations: bool = True
    b_dec_init: Literal["geometric_median", "mean", "zeros"] = "geometric_median"
    dtype: Any = "float32"

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "dtype", jaxlens.canonical_dtype(self.dtype, name="dtype"))
        except ValueError as err:
            raise SAEConfigError(str(err)) from None
        self._check_shape()
        self._check_loss_knobs()

    def _check_shape(self) -> None:
        """Sizes, architecture and `k`."""
        _check(isinstance(self.d_in, int) and self.d_in > 0, "d_in", "a positive int", self.d_in)
        _check(
            isinstance(self.d_sae, int) and self.d_sae > 0, "d_sae", "a positive int", self.d_sae
        )
        _check(
            self.architecture in ARCHITECTURES,
            "architecture",
            f"one of {ARCHITECTURES}",
            self.architecture,
        )
        sparse = self.architecture in ("topk", "batchtopk")
        if sparse:
            _check(
                isinstance(self.k, int) and 0 < self.k <= self.d_sae,
                "k",
                f"an int in [1, d_sae={self.d_sae}] for architecture {self.architecture!r}",
                self.k,
            )
        else:
            _check(self.k is None, "k", f"None for architecture {self.architecture!r}", self.k)

    def _check_loss_knobs(self) -> None:
        """The losses' coefficients, AuxK, dead latents, BatchTopK and the decoder-bias init."""
        for name in ("l1_coefficient", "l0_coefficient", "aux_k_coefficient"):
            value = getattr(self, name)
            _check(value >= 0, name, "a float >= 0", value)
        for name in ("jumprelu_bandwidth", "jumprelu_init_threshold"):
            value = getattr(self, name)
            _check(value > 0, name, "a float > 0", value)
        _check(
            self.aux_k is None or (isinstance(self.aux_k, int) and self.aux_k >= 0),
            "aux_k",
            "None or an int >= 0",
            self.aux_k,
        )
        _check(
            isinstance(self.dead_tokens_threshold, int) and self.dead_tokens_threshold > 0,
            "dead_tokens_threshold",
            "a positive int",
            self.dead_tokens_threshold,
        )
        _check(
            self.batchtopk_row_cap is None
            or (isinstance(self.batchtopk_row_cap, int) and self.batchtopk_row_cap > 0),
            "batchtopk_row_cap",
            "None or a positive int",
            self.batchtopk_row_cap,
        )
        _check(
            0.0 <= self.batchtopk_threshold_momentum < 1.0,
            "batchtopk_threshold_momentum",
            "a float in [0, 1)",
            self.batchtopk_threshold_momentum,
        )
        _check(
            self.b_dec_init in ("geometric_median", "mean", "zeros"),
            "b_dec_init",
            "'geometric_median', 'mean' or 'zeros'",
            self.b_dec_init,
        )

    @property
    def sparse_code(self) -> bool:
        """Whether training keeps a fixed number of latents per batch (sparse decode path)."""
        return self.architecture in ("topk", "batchtopk")

    @property
    def has_threshold(self) -> bool:
        """Whether the SAE is a JumpReLU at inference (a `log_threshold` param for jumprelu, a
        running `threshold` for batchtopk; both export as SAELens's `threshold`)."""
        return self.architecture in ("jumprelu", "batchtopk")

    @property
    def unit_norm_decoder(self) -> bool:
        """Resolved `normalize_decoder`."""
        if self.normalize_decoder is None:
            return self.sparse_code
        return self.normalize_decoder

    @property
    def resolved_aux_k(self) -> int:
        """Resolved `aux_k` (0 when AuxK is off or the architecture has none)."""
        if not self.sparse_code:
            return 0
        aux = self.d_in // 2 if self.aux_k is None else self.aux_k
        return min(aux, self.d_sae)

    @property
    def row_cap(self) -> int:
        """Resolved `batchtopk_row_cap` (k for `topk`)."""
        assert self.k is not None
        if self.architecture == "topk":
            return self.k
        cap = 4 * self.k if self.batchtopk_row_cap is None else self.batchtopk_row_cap
        return max(min(cap, self.d_sae), self.k)


@dataclasses.dataclass(frozen=True, kw_only=True)
class FitOptions:
    """How `sae.fit` trains, beyond `steps`, `batch_size`, `lr` and `mesh`.

    Attributes:
        lr_warmup_steps: linear learning-rate warm-up from 0 over this many steps.
        lr_decay_fraction: the last fraction of the steps decays the learning rate linearly to 0.
        sparsity_warmup_steps: the sparsity coefficient (L1 / L0) ramps linearly from 0 over
            this many steps.
        adam_b1: Adam's first-moment decay.
        adam_b2: Adam's second-moment decay.
        grad_clip: global gradient-norm clip; 0 turns it off.
        init_sample_size: activations sampled at the start for the normalisation scale and the
            decoder-bias init.
        geometric_median_iters: Weiszfeld iterations for `b_dec_init="geometric_median"`.
        checkpoint_every: save the training state every this many steps (0: only at the end
            when `checkpoint_dir` is given).
        log_every: compute host-side training statistics every this many steps.
        seed_offset: added to the data key (a way to get a different data order, same init).
    """

    lr_warmup_steps: int = 0
    lr_decay_fraction: float = 0.2
    sparsity_warmup_steps: int = 0
    adam_b1: float = 0.9
    adam_b2: float = 0.999
    grad_clip: float = 0.0
    init_sample_size: int = 4096
    geometric_median_iters: int = 20
    checkpoint_every: int = 0
    log_every: int = 50
    seed_offset: int = 0

    def __post_init__(self) -> None:
        for name in (
            "lr_warmup_steps",
            "sparsity_warmup_steps",
            "geometric_median_iters",
            "checkpoint_every",
            "seed_offset",
        ):
            value = getattr(self, name)
            _check(isinstance(value, int) and value >= 0, name, "an int >= 0", value)
        for name in ("init_sample_size", "log_every"):
            value = getattr(self, name)
            _check(isinstance(value, int) and value > 0, name, "a positive int", value)
        _check(
            0.0 <= self.lr_decay_fraction <= 1.0,
            "lr_decay_fraction",
            "a float in [0, 1]",
            self.lr_decay_fraction,
        )
        for name in ("adam_b1", "adam_b2"):
            value = getattr(self, name)
            _check(0.0 <= value < 1.0, name, "a float in [0, 1)", value)
        _check(self.grad_clip >= 0, "grad_clip", "a float >= 0", self.grad_clip)
