"""Logit lens and tuned lens: each layer's residual stream read as next-token predictions.

The logit lens (nostalgebraist 2020) applies the model's own final norm and unembedding to
`resid_post` of every layer; the last layer's reading is the model's output. The tuned lens
(Belrose et al. 2023) first passes layer l's residual through an affine translator
`h + h @ A[l] + b[l]` (identity at zero, so an untrained tuned lens is the logit lens), trained
to minimise KL(final || lens) on a token stream. A tuned lens is a plain dict
`{"A": [L, D, D], "b": [L, D]}`, saved as safetensors.

Everything here is a pure function of `(params, ...)`; `layer_predictions` is one jitted
program: the forward, the capture, the lens and the statistics. `write_lens_report` puts them
in a run folder with the KL-by-layer plot.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, Int, Shaped

from jaxlens.config import ModelConfig
from jaxlens.hooks import Capture
from jaxlens.layers import Norm
from jaxlens.model import model_apply, unembed
from jaxlens.params import Params

TunedLens = dict[str, Array]


class LensStats(NamedTuple):
    """Per-layer readings of a batch.

    `kl [L]`: KL(final || layer) in nats, averaged over the real tokens; `kl_tokens [L, B, T]`
    per token; `top_tokens`, `top_probs [L, B, T, k]` the layer's most likely next tokens.
    """

    kl: Float[Array, " L"]
    kl_tokens: Float[Array, "L B T"]
    top_tokens: Int[Array, "L B T k"]
    top_probs: Float[Array, "L B T k"]


def logit_lens(
    params: Params, resid: Float[Array, "*batch D"], *, config: ModelConfig
) -> Float[Array, "*batch V"]:
    """fp32 logits of residual vectors through the final norm and unembedding."""
    lead = resid.shape[:-1]
    x = resid.reshape(1, -1, resid.shape[-1]).astype(jnp.dtype(config.dtype))
    x = Norm(config, config.d_model, config.norm_eps).apply({"params": params["final_norm"]}, x)
    return unembed(params, x, config).reshape(lead + (-1,))


def translate(lens: TunedLens, resid: Float[Array, "L B T D"]) -> Float[Array, "L B T D"]:
    """Each layer's translator `h + h @ A[l] + b[l]` applied to `resid [L, B, T, D]`."""
    a, b = lens["A"].astype(jnp.float32), lens["b"].astype(jnp.float32)
    h = resid.astype(jnp.float32)
    return (h + jnp.einsum("LBTD,LDE->LBTE", h, a) + b[:, None, None]).astype(resid.dtype)


def init_tuned_lens(config: ModelConfig) -> TunedLens:
    """The identity translators: the tuned lens before training equals the logit lens."""
    d, n = config.d_model, config.n_layers
    return {"A": jnp.zeros((n, d, d), jnp.float32), "b": jnp.zeros((n, d), jnp.float32)}


def lens_stats(
    lens_logits: Float[Array, "L B T V"],
    final_logits: Float[Array, "B T V"],
    token_mask: Shaped[Array, "B T"] | None = None,
    *,
    k: int = 5,
) -> LensStats:
    """KL(final || layer) per token and averaged over `token_mask`, and each layer's top k."""
    logp = jax.nn.log_softmax(lens_logits.astype(jnp.float32), axis=-1)
    final = jax.nn.log_softmax(final_logits.astype(jnp.float32), axis=-1)
    kl = jnp.sum(jnp.exp(final) * (final - logp), axis=-1)  # [L, B, T]
    w = jnp.ones(kl.shape[1:]) if token_mask is None else token_mask.astype(jnp.float32)
    mean = jnp.einsum("LBT,BT->L", kl, w) / jnp.maximum(w.sum(), 1.0)
    top_logp, top = jax.lax.top_k(logp, k)
    return LensStats(kl=mean, kl_tokens=kl, top_tokens=top, top_probs=jnp.exp(top_logp))


def _readings(params, tokens, mask, lens, config):
    """`(lens logits [L, B, T, V], final logits [B, T, V])` in one forward."""
    out = model_apply(
        params, tokens, config=config, attention_mask=mask, capture=Capture(("resid_post",))
    )
    resid = out.captures["resid_post"]  # [L, B, T, D]
    if lens is not None:
        resid = translate(lens, resid)
    return logit_lens(params, resid, config=config), out.logits


@functools.partial(jax.jit, static_argnames=("config", "k"))
def layer_predictions(
    params: Params,
    tokens: Int[Array, "B T"],
    *,
    config: ModelConfig,
    attention_mask: Shaped[Array, "B T"] | None = None,
    lens: TunedLens | None = None,
    k: int = 5,
) -> LensStats:
    """The logit lens (or, given `lens`, the tuned lens) at every layer of a batch.

    Memory: the lens logits `[L, B, T, V]` in fp32 exist inside the program (the statistics
    come back, not the logits); chunk the batch when `L * B * T * V * 4` bytes is too much.
    """
    lens_logits, final = _readings(params, tokens, attention_mask, lens, config)
    return lens_stats(lens_logits, final, attention_mask, k=k)


def _lens_loss(lens, resid, final, mask, params, config):
    logits = logit_lens(params, translate(lens, resid), config=config)
    return lens_stats(logits, final, mask, k=1).kl.mean()


def fit_tuned_lens(
    params: Params,
    tokens: Int[Array, "N T"],
    *,
    config: ModelConfig,
    key: Array,
    steps: int = 200,
    batch_size: int = 8,
    lr: float = 1e-3,
    attention_mask: Shaped[Array, "N T"] | None = None,
) -> TunedLens:
    """Trains one affine translator per layer (Adam, mean per-layer KL to the final layer)
    on rows of `tokens` drawn at random (`key`); the model stays frozen."""
    tokens = jnp.asarray(tokens, jnp.int32)
    mask = jnp.ones(tokens.shape, bool) if attention_mask is None else jnp.asarray(attention_mask)
    opt = optax.adam(lr)

    @jax.jit
    def step(lens, opt_state, params, rows, row_mask):
        out = model_apply(
            params, rows, config=config, attention_mask=row_mask,
            capture=Capture(("resid_post",)),
        )  # fmt: skip
        resid, final = jax.lax.stop_gradient((out.captures["resid_post"], out.logits))
        loss, grad = jax.value_and_grad(_lens_loss)(lens, resid, final, row_mask, params, config)
        updates, opt_state = opt.update(grad, opt_state, lens)
        return optax.apply_updates(lens, updates), opt_state, loss

    lens = init_tuned_lens(config)
    opt_state = opt.init(lens)
    for i in range(steps):
        rows = jax.random.choice(jax.random.fold_in(key, i), tokens.shape[0], (batch_size,))
        lens, opt_state, _ = step(lens, opt_state, params, tokens[rows], mask[rows])
    return lens


def save_tuned_lens(path: str | Path, lens: TunedLens) -> None:
    """Writes the translators as one safetensors file (`A [L, D, D]`, `b [L, D]`)."""
    from safetensors.numpy import save_file

    save_file({k: np.asarray(v, np.float32) for k, v in lens.items()}, str(path))


def load_tuned_lens(path: str | Path, config: ModelConfig | None = None) -> TunedLens:
    """Reads a tuned lens; with `config`, checks it fits the model."""
    from safetensors.numpy import load_file

    lens = {k: jnp.asarray(v) for k, v in load_file(str(path)).items()}
    if set(lens) != {"A", "b"}:
        raise ValueError(f"{path}: tensors {sorted(lens)}, expected 'A' and 'b'")
    if config is not None:
        want = (config.n_layers, config.d_model, config.d_model)
        if lens["A"].shape != want or lens["b"].shape != want[:2]:
            raise ValueError(
                f"{path}: A {lens['A'].shape}, b {lens['b'].shape}; this model needs A {want}"
            )
    return lens


def write_lens_report(
    run: Any,
    stats: LensStats,
    *,
    tuned: LensStats | None = None,
    decode: Callable[[int], str] = str,
    row: int = 0,
) -> Path:
    """Writes the per-layer readings into a `jaxlens.runs.RunFolder`: `metrics.jsonl` (one
    record per layer), the summary table, the KL-by-layer plot (`lens_kl.png`, with the tuned
    lens beside the logit lens when given), the top tokens of batch row `row` at its last
    position per layer (`decode` turns an id into text), and `report.md`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jaxlens.runs import markdown_table

    readings = (
        {"logit lens": stats} if tuned is None else {"logit lens": stats, "tuned lens": tuned}
    )
    kl = {name: np.asarray(s.kl, np.float64) for name, s in readings.items()}
    rows = [
        {"layer": layer, **{f"{name} KL": float(v[layer]) for name, v in kl.items()}}
        for layer in range(len(kl["logit lens"]))
    ]
    for record in rows:
        run.log(record)
    run.summary(rows)
    fig, ax = plt.subplots(figsize=(5, 3))
    for name, values in kl.items():
        ax.plot(np.arange(len(values)), values, marker="o", label=name)
    ax.set(xlabel="layer (resid_post)", ylabel="KL(final || lens) [nats]")
    ax.set_xticks(np.arange(len(kl["logit lens"])))
    ax.legend()
    run.figure("lens_kl", fig, caption="Per-layer KL to the model's output, over real tokens.")
    for name, s in readings.items():
        top = np.asarray(s.top_tokens)[:, row, -1]  # [L, k]
        probs = np.asarray(s.top_probs)[:, row, -1]
        table = [
            {"layer": layer, "top tokens": ", ".join(
                f"{decode(int(t))!r} {p:.2f}" for t, p in zip(top[layer], probs[layer], strict=True)
            )}
            for layer in range(top.shape[0])
        ]  # fmt: skip
        run.section(f"{name}: top tokens at the last position of row {row}", markdown_table(table))
    return run.write_report("Logit lens" if tuned is None else "Logit lens and tuned lens")
