"""The model side of the study: bucketed batches and the jitted readouts.

The model is a `jaxlens.LoadedModel` (`jaxlens.load_model(path, mesh=...)`, the mesh from
`jaxlens.sharding.parse_mesh("data=2,fsdp=4,tensor=1")`): its `stop_tokens` end generated
replies and its `put` places each batch (batch-sharded on a mesh).

- `batches(tokenizer, conversations, batch_size, bucket)` sorts conversations by rendered
  length and yields left-padded batches whose width is rounded up to a multiple of `bucket`:
  a few compiled shapes serve every prompt, and a batch of long prompts is never padded to
  the longest prompt of the whole run (bounded memory for 3-4k-token prompts).
- `next_token_logprobs(model, batch, option_ids, interventions)`: log-probabilities of
  the option tokens at the position after the prompt, `[B, options]` (one jitted program).
- `prompt_captures(model, batch, interventions)`: every layer's `resid_post` at the last
  prompt token and averaged over the prompt, `[L, B, D]` each, from one jitted pass.
  The pass captures `[L, B, T, D]` inside the jit and reduces it there; its memory is part of
  the `--plan` estimate.
- `generate(model, batch, ...)` greedy replies, `decode(model, out, n)` their text.

Arrays follow the project's axis letters: `B` batch, `T` prompt positions, `L` layers, `D`
model width; `b` counts a batch's real rows (`B` less the rows repeated to fill the last batch).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

import jaxlens
from jaxlens.hf import tokenizer_pad_id

SITE = "resid_post"


def token_id(tokenizer, text: str) -> int:
    """The id of `text` as the first token of a reply (it must be a single token)."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) != 1:
        raise ValueError(f"option {text!r} is {len(ids)} tokens in this tokenizer; expected 1")
    return int(ids[0])


class Batch(NamedTuple):
    """Rows of the conversation list, left padded (the last batch repeats its last row)."""

    rows: Int[np.ndarray, " b"]  # indices into the conversation list (b <= B real rows)
    tokens: Int[np.ndarray, "B T"]
    mask: Int[np.ndarray, "B T"]


def batches(
    tokenizer,
    conversations: Sequence[list[dict]],
    *,
    batch_size: int,
    bucket: int = 32,
    add_generation_prompt: bool = True,
) -> Iterator[Batch]:
    """Length-sorted, left-padded batches (width a multiple of `bucket`); the last batch is
    filled up by repeating its last row so that every batch has `batch_size` rows."""
    ids = [
        jaxlens.apply_chat_template(tokenizer, c, add_generation_prompt=add_generation_prompt)
        for c in conversations
    ]
    order = np.argsort([len(x) for x in ids], kind="stable")
    pad = tokenizer_pad_id(tokenizer)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        fill = np.concatenate([rows, np.repeat(rows[-1:], batch_size - len(rows))])
        p = jaxlens.prompts.pad_batch([ids[i] for i in fill], pad_id=pad, multiple_of=bucket)
        yield Batch(rows, p.tokens, p.attention_mask)


@partial(jax.jit, static_argnames=("config",))
def _option_logprobs(
    params, tokens: Int[Array, "B T"], mask: Int[Array, "B T"], option_ids, interventions, *, config
) -> Float[Array, "B options"]:
    out = jaxlens.model_apply(
        params, tokens, config=config, attention_mask=mask, interventions=interventions
    )
    logp = jax.nn.log_softmax(out.logits[:, -1].astype(jnp.float32), axis=-1)
    return logp[:, option_ids]


def next_token_logprobs(
    model: jaxlens.LoadedModel, batch: Batch, option_ids: Sequence[int], interventions=None
) -> Float[np.ndarray, "b options"]:
    """Log-probabilities of `option_ids` as the first reply token, one row per real row."""
    out = _option_logprobs(
        model.params,
        model.put(batch.tokens),
        model.put(batch.mask),
        jnp.asarray(option_ids, jnp.int32),
        interventions,
        config=model.config,
    )
    return np.asarray(out)[: len(batch.rows)]


@partial(jax.jit, static_argnames=("config",))
def _prompt_captures(
    params, tokens: Int[Array, "B T"], mask: Int[Array, "B T"], interventions, *, config
) -> tuple[Float[Array, "L B D"], Float[Array, "L B D"]]:
    capture = jaxlens.Capture((SITE,), reduce="none")
    out = jaxlens.model_apply(
        params, tokens, config=config, attention_mask=mask, interventions=interventions,
        capture=capture,
    )  # fmt: skip
    h = out.captures[SITE].astype(jnp.float32)  # [L, B, T, D]
    w = mask.astype(jnp.float32)
    mean = jnp.einsum("lbtd,bt->lbd", h, w) / w.sum(1)[None, :, None]
    return h[:, :, -1], mean  # left padding: the last prompt token is column T - 1


def prompt_captures(
    model: jaxlens.LoadedModel, batch: Batch, interventions=None
) -> tuple[Float[np.ndarray, "L b D"], Float[np.ndarray, "L b D"]]:
    """`(last, mean)` `resid_post` over the prompt, every layer, one row per real row."""
    last, mean = _prompt_captures(
        model.params, model.put(batch.tokens), model.put(batch.mask), interventions,
        config=model.config,
    )  # fmt: skip
    n = len(batch.rows)
    return np.asarray(last)[:, :n], np.asarray(mean)[:, :n]


def generate(
    model: jaxlens.LoadedModel,
    batch: Batch,
    *,
    max_new_tokens: int,
    capture: jaxlens.Capture | None = None,
    interventions: Any = None,
) -> jaxlens.GenerateOutput:
    """Greedy generation for a batch, stopping at the model's `stop_tokens`."""
    return jaxlens.generate(
        model.params,
        model.put(batch.tokens),
        attention_mask=model.put(batch.mask),
        config=model.config,
        key=jax.random.key(0),
        max_new_tokens=max_new_tokens,
        sampling=jaxlens.Sampling(temperature=0.0),
        stop_tokens=model.stop_tokens,
        capture=capture,
        interventions=interventions,
    )


def decode(model: jaxlens.LoadedModel, out: jaxlens.GenerateOutput, n: int) -> list[str]:
    """The text of the first `n` generated replies (special tokens dropped)."""
    tokens, lengths = np.asarray(out.tokens), np.asarray(out.lengths)
    return [
        model.tokenizer.decode(tokens[b, : lengths[b]].tolist(), skip_special_tokens=True)
        for b in range(n)
    ]
