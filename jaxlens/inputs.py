"""Validation of user-facing inputs, run outside `jit` so errors name the culprit plainly."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxlens.config import ModelConfig
from jaxlens.hooks import Capture, HookSpecError, Interventions


class InputError(ValueError):
    """Tokens, masks or specs that do not fit the model."""


def _concrete(x: Any) -> bool:
    return not isinstance(x, jax.core.Tracer)


def check_tokens(
    tokens: Any, attention_mask: Any, config: ModelConfig, *, name: str = "tokens"
) -> tuple[jax.Array, jax.Array]:
    """Returns `(tokens int32 [B, T], mask bool [B, T])`, raising `InputError` on bad input."""
    if not hasattr(tokens, "shape") or not hasattr(tokens, "dtype"):
        tokens = np.asarray(tokens)
    if tokens.ndim != 2:
        raise InputError(f"{name} has shape {tuple(tokens.shape)}: expected [batch, seq_len]")
    if not jnp.issubdtype(tokens.dtype, jnp.integer):
        raise InputError(f"{name} has dtype {tokens.dtype}: expected integer token ids")
    if tokens.shape[1] == 0 or tokens.shape[0] == 0:
        raise InputError(f"{name} has shape {tuple(tokens.shape)}: expected a non-empty batch")
    if _concrete(tokens):
        lo, hi = int(np.min(tokens)), int(np.max(tokens))
        if lo < 0 or hi >= config.vocab_size:
            raise InputError(
                f"{name} holds ids in [{lo}, {hi}]: expected 0 <= id < "
                f"vocab_size={config.vocab_size}"
            )
    if config.positions == "learned" and tokens.shape[1] > config.max_seq_len:
        raise InputError(
            f"{name} has {tokens.shape[1]} positions: this {config.arch} model has "
            f"learned positions for at most max_seq_len={config.max_seq_len}"
        )
    if attention_mask is None:
        mask = jnp.ones(tokens.shape, bool)
    else:
        if not hasattr(attention_mask, "shape"):
            attention_mask = np.asarray(attention_mask)
        if tuple(attention_mask.shape) != tuple(tokens.shape):
            raise InputError(
                f"attention_mask has shape {tuple(attention_mask.shape)}: expected "
                f"{tuple(tokens.shape)} like {name}"
            )
        if _concrete(attention_mask) and not np.isin(np.asarray(attention_mask), (0, 1)).all():
            raise InputError("attention_mask holds values other than 0/1")
        mask = jnp.asarray(attention_mask).astype(bool)
    return jnp.asarray(tokens, jnp.int32), mask


def check_specs(
    capture: Capture | None,
    interventions: Interventions | None,
    config: ModelConfig,
    shape: tuple[int, int],
) -> None:
    """Checks capture layers and intervention shapes against the model and the batch."""
    if capture is not None:
        if not isinstance(capture, Capture):
            raise InputError(f"capture={capture!r}: expected a jaxlens.Capture")
        capture.resolved_layers(config.n_layers)
        if capture.span is not None and tuple(capture.span.shape) != shape:
            raise HookSpecError(f"Capture.span has shape {capture.span.shape}: expected {shape}")
        if capture.positions is not None:
            pos = capture.positions
            if pos.ndim != 2 or pos.shape[0] != shape[0]:
                raise HookSpecError(
                    f"Capture.positions has shape {pos.shape}: expected [{shape[0]}, P]"
                )
            if _concrete(pos) and (np.min(pos) < 0 or np.max(pos) >= shape[1]):
                raise HookSpecError(f"Capture.positions outside [0, {shape[1]})")
    if interventions is None:
        return
    if not isinstance(interventions, Interventions):
        raise InputError(
            f"interventions={type(interventions).__name__}: expected "
            "jaxlens.Interventions (build it with steer/ablate/patch/splice)"
        )
    for edit in interventions.edits:
        kind = type(edit).__name__
        if _concrete(edit.layers) and (np.asarray(edit.layers) >= config.n_layers).any():
            raise HookSpecError(
                f"{kind} at {edit.site} targets layers "
                f"{np.asarray(edit.layers).tolist()}: the model has "
                f"{config.n_layers}"
            )
        _check_edit_shapes(edit, kind, config, shape)


def _check_edit_shapes(edit: Any, kind: str, config: ModelConfig, shape: tuple[int, int]):
    d = config.d_model
    for field in ("vectors", "directions"):
        value = getattr(edit, field, None)
        if value is not None:
            if value.shape[-1] != d:
                raise HookSpecError(
                    f"{kind} {field} end in {value.shape[-1]}: expected d_model={d}"
                )
            if value.ndim == 3 and value.shape[1] != shape[0]:
                raise HookSpecError(
                    f"{kind} {field} have {value.shape[1]} batch rows: expected {shape[0]}"
                )
    mask = getattr(edit, "mask", None)
    if mask is not None and tuple(mask.shape) != shape:
        raise HookSpecError(f"{kind} position mask has shape {tuple(mask.shape)}: expected {shape}")
    values = getattr(edit, "values", None)
    if values is not None and tuple(values.shape[1:]) != shape + (d,):
        raise HookSpecError(
            f"Patch values have shape {tuple(values.shape)}: expected "
            f"[n, {shape[0]}, {shape[1]}, {d}]"
        )


def check_generation(
    mask: jax.Array, config: ModelConfig, max_new_tokens: Any, stop_tokens: Any
) -> tuple[int, ...]:
    """Checks `generate`'s prompt mask (left padded), length budget and stop ids.

    Returns the stop ids as a sorted tuple of ints (a static argument of the jitted program).
    """
    if not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 1:
        raise InputError(f"max_new_tokens={max_new_tokens!r}: expected an int >= 1")
    if _concrete(mask):
        m = np.asarray(mask, bool)
        if not m.any(axis=1).all():
            rows = np.flatnonzero(~m.any(axis=1)).tolist()
            raise InputError(f"prompts rows {rows} have no real token: expected at least one")
        if (np.diff(m.astype(np.int8), axis=1) < 0).any():
            rows = np.flatnonzero((np.diff(m.astype(np.int8), axis=1) < 0).any(axis=1)).tolist()
            raise InputError(
                f"attention_mask rows {rows} are not left padded: expected 0s then 1s "
                "(pad on the left, e.g. jaxlens.prompts.pad_left)"
            )
    total = mask.shape[1] + int(max_new_tokens)
    if config.positions == "learned" and total > config.max_seq_len:
        raise InputError(
            f"prompts width {mask.shape[1]} + max_new_tokens {max_new_tokens} = {total} exceeds "
            f"this {config.arch} model's max_seq_len={config.max_seq_len}"
        )
    if isinstance(stop_tokens, (int, np.integer)):
        stop_tokens = (stop_tokens,)
    try:
        stops = tuple(sorted({int(x) for x in stop_tokens}))
    except (TypeError, ValueError) as err:
        raise InputError(f"stop_tokens={stop_tokens!r}: expected a sequence of token ids") from err
    bad = [x for x in stops if not 0 <= x < config.vocab_size]
    if bad:
        raise InputError(
            f"stop_tokens {bad} outside the vocabulary: expected 0 <= id < {config.vocab_size}"
        )
    return stops
