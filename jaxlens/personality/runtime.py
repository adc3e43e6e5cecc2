"""The model side of the study: loading, meshes, bucketed batches and the jitted readouts.

- `load_model(path, mesh=None)` -> `Model(config, params, tokenizer, mesh)`.
- `parse_mesh("data=2,fsdp=4,tensor=1")` builds a `jaxlens.sharding.make_mesh` mesh.
- `batches(tokenizer, conversations, batch_size, bucket)` sorts conversations by rendered
  length and yields left-padded batches whose width is rounded up to a multiple of `bucket`:
  a few compiled shapes serve every prompt, and a batch of long prompts is never padded to
  the longest prompt of the whole run (bounded memory for 3-4k-token prompts).
- `next_token_logprobs(model, tokens, mask, option_ids, interventions)`: log-probabilities of
  the option tokens at the position after the prompt, `[B, K]` (one jitted program).
- `prompt_captures(model, tokens, mask, interventions)`: every layer's `resid_post` at the last
  prompt token and averaged over the prompt, `[L, B, D]` each, from one jitted pass.
  The pass captures `[L, B, T, D]` inside the jit and reduces it there; its memory is part of
  the `--plan` estimate.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import jaxlens

SITE = "resid_post"


class Model(NamedTuple):
    config: Any
    params: Any
    tokenizer: Any
    mesh: Any = None


def parse_mesh(spec: str | None):
    """`"data=2,fsdp=4,tensor=1"` -> mesh (see `jaxlens.sharding.parse_mesh`)."""
    return jaxlens.sharding.parse_mesh(spec)


def load_model(path: str | os.PathLike, *, mesh=None, dtype: str | None = None) -> Model:
    if not os.path.isdir(path):
        raise FileNotFoundError(f"model: no checkpoint directory at {path}")
    config, params = jaxlens.load_hf(path, dtype=dtype, mesh=mesh)
    return Model(config, params, jaxlens.load_tokenizer(path), mesh)


def token_id(tokenizer, text: str) -> int:
    """The id of `text` as the first token of a reply (it must be a single token)."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) != 1:
        raise ValueError(f"option {text!r} is {len(ids)} tokens in this tokenizer; expected 1")
    return int(ids[0])


def stop_ids(tokenizer) -> tuple[int, ...]:
    out = []
    for name in ("<|im_end|>", "<|eot_id|>", "<|end_of_text|>"):
        i = tokenizer.convert_tokens_to_ids(name)
        if isinstance(i, int) and i != getattr(tokenizer, "unk_token_id", None):
            out.append(i)
    if tokenizer.eos_token_id is not None:
        out.append(int(tokenizer.eos_token_id))
    return tuple(sorted(set(out)))


class Batch(NamedTuple):
    rows: np.ndarray  # [B] indices into the conversation list
    tokens: np.ndarray  # [B, T]
    mask: np.ndarray  # [B, T]


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
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        fill = np.concatenate([rows, np.repeat(rows[-1:], batch_size - len(rows))])
        p = jaxlens.prompts.pad_batch([ids[i] for i in fill], pad_id=pad, multiple_of=bucket)
        yield Batch(rows, p.tokens, p.attention_mask)


def put(model: Model, x: np.ndarray):
    return jnp.asarray(x) if model.mesh is None else jaxlens.sharding.put_batch(x, model.mesh)


@partial(jax.jit, static_argnames=("config",))
def _option_logprobs(params, tokens, mask, option_ids, interventions, *, config):
    out = jaxlens.model_apply(
        params, tokens, config=config, attention_mask=mask, interventions=interventions
    )
    logp = jax.nn.log_softmax(out.logits[:, -1].astype(jnp.float32), axis=-1)
    return logp[:, option_ids]


def next_token_logprobs(model: Model, batch: Batch, option_ids, interventions=None) -> np.ndarray:
    """`[B, K]` log-probabilities of `option_ids` as the first reply token."""
    out = _option_logprobs(
        model.params,
        put(model, batch.tokens),
        put(model, batch.mask),
        jnp.asarray(option_ids, jnp.int32),
        interventions,
        config=model.config,
    )
    return np.asarray(out)[: len(batch.rows)]


@partial(jax.jit, static_argnames=("config",))
def _prompt_captures(params, tokens, mask, interventions, *, config):
    capture = jaxlens.Capture((SITE,), reduce="none")
    out = jaxlens.model_apply(
        params, tokens, config=config, attention_mask=mask, interventions=interventions,
        capture=capture,
    )  # fmt: skip
    h = out.captures[SITE].astype(jnp.float32)  # [L, B, T, D]
    w = mask.astype(jnp.float32)
    mean = jnp.einsum("lbtd,bt->lbd", h, w) / w.sum(1)[None, :, None]
    return h[:, :, -1], mean  # left padding: the last prompt token is column T - 1


def prompt_captures(model: Model, batch: Batch, interventions=None) -> tuple[np.ndarray, ...]:
    """`(last [L, B, D], mean [L, B, D])` over the prompt, every layer."""
    last, mean = _prompt_captures(
        model.params, put(model, batch.tokens), put(model, batch.mask), interventions,
        config=model.config,
    )  # fmt: skip
    n = len(batch.rows)
    return np.asarray(last)[:, :n], np.asarray(mean)[:, :n]


def generate(model: Model, batch: Batch, *, max_new_tokens: int, capture=None, interventions=None):
    """Greedy generation for a batch (stop at the chat template's end-of-turn)."""
    return jaxlens.generate(
        model.params,
        put(model, batch.tokens),
        attention_mask=put(model, batch.mask),
        config=model.config,
        key=jax.random.key(0),
        max_new_tokens=max_new_tokens,
        sampling=jaxlens.Sampling(temperature=0.0),
        stop_tokens=stop_ids(model.tokenizer),
        capture=capture,
        interventions=interventions,
    )


def decode(model: Model, out, n: int) -> list[str]:
    tokens, lengths = np.asarray(out.tokens), np.asarray(out.lengths)
    return [
        model.tokenizer.decode(tokens[b, : lengths[b]].tolist(), skip_special_tokens=True)
        for b in range(n)
    ]
