"""The sparse training path of TopK and BatchTopK SAEs: a dense encoder, everything else sparse.

A TopK SAE keeps k of N latents per token. A dense step spends five [B, D] x [D, N] matmuls
(encoder forward, decoder forward, both weight gradients, the decoder's input gradient); only the
encoder forward has to be dense, because every pre-activation competes for the top k. The rest
touches M = B * k (token, latent) pairs:

- the kept latents are a `SparseCode` of M triples `(vals, rows, cols)`, rows sorted;
- decoding gathers M decoder rows and sums them per token (`decode_sparse`); autodiff of the
  gather is a scatter-add, so the decoder's weight gradient is sparse by itself;
- the encoder's weight gradient would come out dense from autodiff (the top-k's cotangent is
  scattered into a dense [B, N] array and multiplied back through the matmul), so `select_pre`
  is a `jax.custom_vjp` whose backward scatters the M cotangents straight into `W_enc`'s rows
  (`x_c[rows] * g` added at `cols`), sums them for `b_enc`, and derives `b_dec`'s gradient from
  those sums (`-W_enc @ db_enc`) without a [B, D] pass. The input gradient, needed only when the
  SAE is spliced into a model, is a gather XLA drops when nothing asks for it.

`select` (static) picks the index sets from the dense pre-activations: the per-token top k, the
AuxK top k_aux among dead latents, or the batch-level top B * k. Under a mesh the [B, N]
pre-activations are sharded (B on `data`, N on `model`); `lax.top_k` over the sharded latent
axis is partitioned by XLA, so the selection is the global one, not a per-shard one.

Shapes: B batch (tokens), D model width, N latents, M kept pairs, C candidates per row.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Bool, Float, Int


class SparseCode(NamedTuple):
    """M kept (token, latent) pairs; `rows` ascending.

    Attributes:
        vals: Float[M] pre-activations (before the ReLU) of the kept pairs.
        rows: Int[M] token index of each pair.
        cols: Int[M] latent index of each pair.
    """

    vals: Float[Array, "M"]
    rows: Int[Array, "M"]
    cols: Int[Array, "M"]


Selector = Callable[[Float[Array, "B N"], Bool[Array, "N"]], tuple[SparseCode, ...]]

_NEG = -1e30  # stands in for -inf where a latent may not be picked (keeps gradients finite)


def _row_ids(batch: int, per_row: int) -> Int[Array, "M"]:
    return jnp.repeat(jnp.arange(batch, dtype=jnp.int32), per_row)


def topk_code(pre: Float[Array, "B N"], k: int) -> SparseCode:
    """The k largest pre-activations of each token."""
    vals, idx = lax.top_k(pre, k)  # [B, k]
    return SparseCode(vals.reshape(-1), _row_ids(pre.shape[0], k), idx.reshape(-1).astype(jnp.int32))


def batchtopk_code(pre: Float[Array, "B N"], k: int, row_cap: int) -> SparseCode:
    """The B * k largest pre-activations of the batch, at most `row_cap` per token."""
    batch = pre.shape[0]
    cand_vals, cand_idx = lax.top_k(pre, row_cap)  # [B, C]
    _, pos = lax.top_k(cand_vals.reshape(-1), batch * k)  # [M] positions in [B * C]
    pos = jnp.sort(pos)  # row order: the decode's scatter runs over sorted rows
    rows = (pos // row_cap).astype(jnp.int32)
    return SparseCode(
        cand_vals.reshape(-1)[pos], rows, cand_idx.reshape(-1)[pos].astype(jnp.int32)
    )


def auxk_code(pre: Float[Array, "B N"], dead: Bool[Array, "N"], k_aux: int) -> SparseCode:
    """The k_aux largest pre-activations among dead latents (AuxK); skipped when none is dead."""
    batch = pre.shape[0]

    def pick(pre: Float[Array, "B N"]) -> SparseCode:
        return topk_code(jnp.where(dead[None, :], pre, _NEG), k_aux)

    def none(pre: Float[Array, "B N"]) -> SparseCode:
        m = batch * k_aux
        return SparseCode(
            jnp.full((m,), _NEG, pre.dtype), _row_ids(batch, k_aux), jnp.zeros((m,), jnp.int32)
        )

    return lax.cond(jnp.any(dead), pick, none, pre)


def make_selector(architecture: str, k: int, row_cap: int, k_aux: int) -> Selector:
    """The static selection function for `select_pre`: main code, then AuxK's if k_aux > 0."""

    def select(pre: Float[Array, "B N"], dead: Bool[Array, "N"]) -> tuple[SparseCode, ...]:
        if architecture == "topk":
            main = topk_code(pre, k)
        else:
            main = batchtopk_code(pre, k, row_cap)
        if k_aux == 0:
            return (main,)
        return (main, auxk_code(pre, dead, k_aux))

    return select


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def select_pre(
    select: Selector,
    x: Float[Array, "B D"],
    w_enc: Float[Array, "D N"],
    b_enc: Float[Array, "N"],
    b_dec: Float[Array, "D"],
    dead: Bool[Array, "N"],
) -> tuple[SparseCode, ...]:
    """Dense pre-activations `(x - b_dec) @ W_enc + b_enc`, reduced to the selected pairs."""
    return select((x - b_dec) @ w_enc + b_enc, dead)


def _select_pre_fwd(select, x, w_enc, b_enc, b_dec, dead):
    codes = select_pre(select, x, w_enc, b_enc, b_dec, dead)
    return codes, (x, w_enc, b_dec, dead, codes)


def _scatter_grads(x_c, w_enc, code: SparseCode, g: Float[Array, "M"]):
    """Cotangents of x_c @ W_enc + b_enc read at `code`'s pairs: (d_x_c, d_W_enc^T, d_b_enc)."""
    d_model, n_latents = w_enc.shape
    d_w_enc_t = jnp.zeros((n_latents, d_model), w_enc.dtype).at[code.cols].add(
        g[:, None] * x_c[code.rows]
    )
    d_b_enc = jnp.zeros((n_latents,), w_enc.dtype).at[code.cols].add(g)
    d_x_c = jax.ops.segment_sum(
        g[:, None] * w_enc.T[code.cols], code.rows, x_c.shape[0], indices_are_sorted=True
    )
    return d_x_c, d_w_enc_t, d_b_enc


def _select_pre_bwd(select, res, cotangents):
    x, w_enc, b_dec, dead, codes = res
    x_c = x - b_dec
    d_x_c, d_w_enc_t, d_b_enc = _scatter_grads(x_c, w_enc, codes[0], cotangents[0].vals)
    if len(codes) > 1:  # AuxK pairs carry gradient only while some latent is dead
        zeros = (jnp.zeros_like(d_x_c), jnp.zeros_like(d_w_enc_t), jnp.zeros_like(d_b_enc))
        aux = lax.cond(
            jnp.any(dead),
            lambda: _scatter_grads(x_c, w_enc, codes[1], cotangents[1].vals),
            lambda: zeros,
        )
        d_x_c, d_w_enc_t, d_b_enc = (a + b for a, b in zip((d_x_c, d_w_enc_t, d_b_enc), aux))
    d_b_dec = -(w_enc @ d_b_enc)  # b_dec enters as x - b_dec: its gradient is -sum_B d_x_c
    return d_x_c, d_w_enc_t.T, d_b_enc, d_b_dec, jnp.zeros(dead.shape, jax.dtypes.float0)


select_pre.defvjp(_select_pre_fwd, _select_pre_bwd)


def decode_sparse(
    acts: Float[Array, "M"],
    code: SparseCode,
    w_dec: Float[Array, "N D"],
    batch: int,
) -> Float[Array, "B D"]:
    """Sum of `acts * W_dec[cols]` per token: the decoder without a [B, N] matmul."""
    contrib = acts[:, None] * w_dec[code.cols]  # [M, D]
    return jax.ops.segment_sum(contrib, code.rows, num_segments=batch, indices_are_sorted=True)


def fired_latents(acts: Float[Array, "M"], code: SparseCode, n_latents: int) -> Bool[Array, "N"]:
    """Which latents have a positive activation somewhere in the code."""
    return jnp.zeros((n_latents,), bool).at[code.cols].max(acts > 0)


def densify(acts: Float[Array, "M"], code: SparseCode, batch: int, n_latents: int):
    """The code as a dense [B, N] array (tests and metrics; not on the training path)."""
    return jnp.zeros((batch, n_latents), acts.dtype).at[code.rows, code.cols].add(acts)
