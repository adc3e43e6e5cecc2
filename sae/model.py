"""Sparse autoencoder architectures: params, init, encode, decode and the training loss.

An SAE is `(config, params)`: `config` a frozen `SAEConfig`, `params` a dict pytree

    W_enc [D, N]   b_enc [N]   W_dec [N, D]   b_dec [D]
    log_threshold [N] (jumprelu)   threshold [N] (batchtopk)

with D = d_in and N = d_sae, the layout SAELens uses on disk. The pre-activations are
`(x - b_dec) @ W_enc + b_enc`; the reconstruction is `f @ W_dec + b_dec`.

| architecture | latents f (inference)             | sparsity term in training                 |
|--------------|-----------------------------------|-------------------------------------------|
| relu         | relu(pre)                         | l1 * sum_n f_n * norm(W_dec[n])            |
| topk         | relu of each token's top k        | none (k fixed); AuxK on dead latents       |
| batchtopk    | relu(pre) * (pre > threshold)     | none (batch-level top B*k); AuxK           |
| jumprelu     | relu(pre) * (pre > threshold)     | l0 * #(pre > threshold), STE for threshold |

This is SAELens's and Gemma Scope's JumpReLU. Its threshold stays positive because what is
trained is `log_threshold` (threshold = exp(log_threshold)); with threshold > 0 the ReLU changes
nothing, and `save_saelens` writes `threshold` so the file computes the same latents in
SAELens. The step function's pseudo-derivative uses a rectangle kernel of width
`jumprelu_bandwidth` (Rajamanoharan et al. 2024): d/dthreshold of pre * H(pre - t) is
-(t / eps) * rect((pre - t) / eps), and of H(pre - t) it is -(1 / eps) * rect(...); autodiff
carries both through exp to `log_threshold`. BatchTopK trains with the batch-level selection and
keeps a running mean of the smallest kept activation (>= 0) as its inference threshold (Bussmann
et al. 2024), so it exports as JumpReLU too.

Init (`init`): decoder rows random unit vectors, encoder its transpose, zero biases. `fit` then
sets `b_dec` from data. Shapes: B batch, D model width, N latents.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

from sae import sparse
from sae.config import SAEConfig

Params = dict[str, jax.Array]


class SAEInputError(ValueError):
    """An input array does not have the shape or contents an SAE function expects."""


def check_input(x: jax.Array, config: SAEConfig, name: str = "x") -> None:
    """Raise `SAEInputError` unless `x` is a float array whose last axis is d_in."""
    shape = getattr(x, "shape", None)
    if shape is None or len(shape) < 1 or shape[-1] != config.d_in:
        raise SAEInputError(f"{name} must be an array [..., d_in={config.d_in}]; got shape {shape}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise SAEInputError(f"{name} must be a float array; got dtype {x.dtype}")


def param_shapes(config: SAEConfig) -> dict[str, tuple[int, ...]]:
    """The shape of every parameter of an SAE with this config."""
    d, n = config.d_in, config.d_sae
    shapes = {"W_enc": (d, n), "b_enc": (n,), "W_dec": (n, d), "b_dec": (d,)}
    if config.architecture == "jumprelu":
        shapes["log_threshold"] = (n,)
    elif config.architecture == "batchtopk":
        shapes["threshold"] = (n,)
    return shapes


def threshold(params: Params, config: SAEConfig) -> jax.Array:
    """The inference threshold `[N]` (jumprelu: exp(log_threshold); batchtopk: threshold)."""
    if config.architecture == "jumprelu":
        return jnp.exp(params["log_threshold"])
    return params["threshold"]


def init(key: jax.Array, config: SAEConfig, dtype=None) -> Params:
    """Random params in `dtype` (default `config.dtype`): unit-norm decoder rows, encoder =
    decoder transpose, zero biases, JumpReLU thresholds at `jumprelu_init_threshold`."""
    dtype = config.dtype if dtype is None else dtype
    w_dec = jax.random.normal(key, (config.d_sae, config.d_in), dtype)
    w_dec = w_dec / jnp.linalg.norm(w_dec, axis=-1, keepdims=True)
    params = {
        "W_enc": w_dec.T,
        "b_enc": jnp.zeros((config.d_sae,), dtype),
        "W_dec": w_dec,
        "b_dec": jnp.zeros((config.d_in,), dtype),
    }
    if config.architecture == "jumprelu":
        log_thr = jnp.log(jnp.float32(config.jumprelu_init_threshold))
        params["log_threshold"] = jnp.full((config.d_sae,), log_thr, dtype)
    elif config.architecture == "batchtopk":
        params["threshold"] = jnp.zeros((config.d_sae,), dtype)
    return params


def pre_activations(params: Params, x: Float[Array, "*B D"]) -> Float[Array, "*B N"]:
    """`(x - b_dec) @ W_enc + b_enc`."""
    return (x - params["b_dec"]) @ params["W_enc"] + params["b_enc"]


def _topk_dense(pre: Float[Array, "*B N"], k: int) -> Float[Array, "*B N"]:
    vals, idx = jax.lax.top_k(pre, k)
    out = jnp.zeros_like(pre)
    return jnp.put_along_axis(out, idx, jax.nn.relu(vals), axis=-1, inplace=False)


def activation(pre: Float[Array, "*B N"], params: Params, config: SAEConfig):
    """Inference latents from pre-activations (see the table in the module docstring)."""
    if config.architecture == "relu":
        return jax.nn.relu(pre)
    if config.architecture == "topk":
        return _topk_dense(pre, config.k)
    return jax.nn.relu(pre) * (pre > threshold(params, config)).astype(pre.dtype)


@functools.partial(jax.jit, static_argnames="config")
def _encode(params: Params, x: jax.Array, config: SAEConfig) -> jax.Array:
    return activation(pre_activations(params, x), params, config)


def encode(params: Params, x: Float[Array, "*B D"], *, config: SAEConfig) -> Float[Array, "*B N"]:
    """Latent activations of `x` (inference rule; BatchTopK uses its learned threshold)."""
    check_input(x, config)
    return _encode(params, x, config)


def decode(params: Params, f: Float[Array, "*B N"], *, config: SAEConfig) -> Float[Array, "*B D"]:
    """Reconstruction `f @ W_dec + b_dec`."""
    shape = getattr(f, "shape", None)
    if shape is None or len(shape) < 1 or shape[-1] != config.d_sae:
        raise SAEInputError(f"f must be an array [..., d_sae={config.d_sae}]; got shape {shape}")
    return f @ params["W_dec"] + params["b_dec"]


def reconstruct(params: Params, x: jax.Array, *, config: SAEConfig) -> jax.Array:
    """`decode(encode(x))`, a static-friendly function for `jaxlens.splice`."""
    return (
        activation(pre_activations(params, x), params, config) @ params["W_dec"] + params["b_dec"]
    )


# JumpReLU and its step function with the rectangle-kernel straight-through estimator.


def _rect(u: jax.Array) -> jax.Array:
    return (jnp.abs(u) < 0.5).astype(u.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def jumprelu(pre: jax.Array, threshold: jax.Array, bandwidth: float) -> jax.Array:
    """pre * H(pre - threshold); gradient to pre where active, STE gradient to the threshold."""
    return jnp.where(pre > threshold, pre, 0.0)


def _jumprelu_fwd(pre, threshold, bandwidth):
    return jumprelu(pre, threshold, bandwidth), (pre, threshold)


def _jumprelu_bwd(bandwidth, res, g):
    pre, threshold = res
    d_pre = jnp.where(pre > threshold, g, 0.0)
    d_thr = -(threshold / bandwidth) * _rect((pre - threshold) / bandwidth) * g
    return d_pre, jnp.sum(d_thr.reshape(-1, threshold.shape[-1]), axis=0)


jumprelu.defvjp(_jumprelu_fwd, _jumprelu_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def step(pre: jax.Array, threshold: jax.Array, bandwidth: float) -> jax.Array:
    """H(pre - threshold); pseudo-derivative only towards the threshold."""
    return (pre > threshold).astype(pre.dtype)


def _step_fwd(pre, threshold, bandwidth):
    return step(pre, threshold, bandwidth), (pre, threshold)


def _step_bwd(bandwidth, res, g):
    pre, threshold = res
    d_thr = -(1.0 / bandwidth) * _rect((pre - threshold) / bandwidth) * g
    return jnp.zeros_like(pre), jnp.sum(d_thr.reshape(-1, threshold.shape[-1]), axis=0)


step.defvjp(_step_fwd, _step_bwd)


class LossParts(NamedTuple):
    """The pieces of one batch's training loss (all scalars but `fired`).

    Attributes:
        mse: mean over tokens of the squared reconstruction error (summed over D).
        sparsity: the L1 / L0 penalty before its coefficient (0 for topk/batchtopk).
        auxk: AuxK loss before its coefficient (0 without dead latents).
        l0: mean number of active latents per token.
        fired: Bool[N] latents active on some token of the batch.
        batch_threshold: smallest kept activation (batchtopk; 0 otherwise).
    """

    mse: jax.Array
    sparsity: jax.Array
    auxk: jax.Array
    l0: jax.Array
    fired: jax.Array
    batch_threshold: jax.Array


def _sq_err(a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.mean(jnp.sum(jnp.square(a - b), axis=-1))


def _dense_parts(params: Params, x: jax.Array, config: SAEConfig) -> LossParts:
    pre = pre_activations(params, x)  # [B, N]
    if config.architecture == "relu":
        f = jax.nn.relu(pre)
        dec_norm = jnp.linalg.norm(params["W_dec"], axis=-1)
        sparsity = jnp.mean(jnp.sum(f * dec_norm, axis=-1))
    else:
        thr = threshold(params, config)
        f = jumprelu(pre, thr, config.jumprelu_bandwidth)
        sparsity = jnp.mean(jnp.sum(step(pre, thr, config.jumprelu_bandwidth), axis=-1))
    x_hat = f @ params["W_dec"] + params["b_dec"]
    active = f > 0
    zero = jnp.zeros((), x.dtype)
    return LossParts(
        mse=_sq_err(x_hat, x),
        sparsity=sparsity,
        auxk=zero,
        l0=jnp.mean(jnp.sum(active, axis=-1).astype(x.dtype)),
        fired=jnp.any(active, axis=0),
        batch_threshold=zero,
    )


def _sparse_parts(params: Params, x: jax.Array, dead: jax.Array, config: SAEConfig) -> LossParts:
    batch = x.shape[0]
    select = sparse.make_selector(
        config.architecture, config.k, config.row_cap, config.resolved_aux_k
    )
    codes = sparse.select_pre(select, x, params["W_enc"], params["b_enc"], params["b_dec"], dead)
    main = codes[0]
    acts = jax.nn.relu(main.vals)
    x_hat = sparse.decode_sparse(acts, main, params["W_dec"], batch) + params["b_dec"]
    auxk = jnp.zeros((), x.dtype)
    if len(codes) > 1:  # AuxK: with no dead latent its code is empty and its loops do nothing
        residual = jax.lax.stop_gradient(x - x_hat)
        aux_hat = sparse.decode_sparse(jax.nn.relu(codes[1].vals), codes[1], params["W_dec"], batch)
        auxk = jnp.where(jnp.any(dead), _sq_err(aux_hat, residual), 0.0)
    kept = acts > 0
    smallest = jnp.min(jnp.where(kept, acts, jnp.inf))
    return LossParts(
        mse=_sq_err(x_hat, x),
        sparsity=jnp.zeros((), x.dtype),
        auxk=auxk,
        l0=jnp.sum(kept).astype(x.dtype) / batch,
        fired=sparse.fired_latents(acts, main, config.d_sae),
        batch_threshold=jnp.where(jnp.isfinite(smallest), smallest, 0.0),
    )


def loss_parts(
    params: Params, x: Float[Array, "B D"], dead: Bool[Array, " N"], *, config: SAEConfig
) -> LossParts:
    """The pieces of the training loss on one batch (training-time encoder rule)."""
    if config.sparse_code:
        return _sparse_parts(params, x, dead, config)
    return _dense_parts(params, x, config)


def total_loss(parts: LossParts, sparsity_scale: jax.Array, config: SAEConfig) -> jax.Array:
    """mse + warmed-up sparsity coefficient * sparsity + aux_k_coefficient * auxk."""
    coefficient = {"relu": config.l1_coefficient, "jumprelu": config.l0_coefficient}.get(
        config.architecture, 0.0
    )
    return (
        parts.mse
        + sparsity_scale * coefficient * parts.sparsity
        + (config.aux_k_coefficient * parts.auxk)
    )
