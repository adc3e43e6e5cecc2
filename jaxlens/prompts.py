"""Chat prompts in, left-padded batches out; generated tokens back to text.

`chat_batch` renders each conversation with the tokenizer's chat template (ending with the
assistant header, ready to generate; `jaxlens.apply_chat_template`), and left pads
the id lists into `tokens, attention_mask [B, T]` for `forward`/`generate`: every prompt ends at
column `T - 1`, so generated token `j` sits at column `T + j` in every row. `multiple_of` rounds
`T` up so that batches of slightly different lengths share one compiled program.
`messages` builds the usual `[system,] user` conversation; `decode` turns a `GenerateOutput`
back into one string per row (the tokens up to each row's length).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from jaxlens.hf.tokenizer import apply_chat_template, left_pad, tokenizer_pad_id


class PromptError(ValueError):
    """Conversations or padding settings that cannot make a batch."""


class Prompts(NamedTuple):
    """`tokens [B, T]` int32 (pad id on the left), `attention_mask [B, T]` int32 (0 = pad),
    `lengths [B]` real prompt tokens per row."""

    tokens: np.ndarray
    attention_mask: np.ndarray
    lengths: np.ndarray


def messages(
    user: str, *, system: str | None = None, history: Sequence[dict[str, str]] = ()
) -> list[dict[str, str]]:
    """`[system?] + history + [user]` as chat-template messages."""
    out = [{"role": "system", "content": system}] if system is not None else []
    return out + [dict(m) for m in history] + [{"role": "user", "content": user}]


def pad_batch(
    ids: Sequence[Sequence[int]], *, pad_id: int, multiple_of: int = 1, length: int | None = None
) -> Prompts:
    """Left pads id lists into a `Prompts` batch of width `length` (default: the longest,
    rounded up to `multiple_of`)."""
    if not ids:
        raise PromptError("pad_batch: expected at least one prompt")
    if not isinstance(multiple_of, int) or multiple_of < 1:
        raise PromptError(f"multiple_of={multiple_of!r}: expected an int >= 1")
    empty = [i for i, s in enumerate(ids) if len(s) == 0]
    if empty:
        raise PromptError(f"prompts {empty} are empty: expected at least one token each")
    longest = max(len(s) for s in ids)
    if length is None:
        length = -(-longest // multiple_of) * multiple_of
    elif length < longest:
        raise PromptError(f"length={length} is shorter than the longest prompt ({longest})")
    tokens, mask = left_pad(ids, pad_id, length)
    return Prompts(tokens=tokens, attention_mask=mask, lengths=mask.sum(axis=1).astype(np.int32))


def chat_batch(
    tokenizer: Any,
    conversations: Sequence[Sequence[dict[str, str]]],
    *,
    add_generation_prompt: bool = True,
    pad_id: int | None = None,
    multiple_of: int = 1,
    length: int | None = None,
) -> Prompts:
    """Renders conversations with the chat template and left pads them (see module docstring).

    Args:
      tokenizer: a HF tokenizer with a `chat_template`.
      conversations: one list of `{"role", "content"}` messages per row.
      add_generation_prompt: end each prompt with the assistant-turn header.
      pad_id: id written into padding (default: the tokenizer's pad, else its eos, else 0).
      multiple_of / length: width rounding, or a fixed width.
    """
    if isinstance(conversations, (str, dict)) or not len(conversations):
        raise PromptError("conversations: expected a non-empty list of message lists")
    ids = [
        apply_chat_template(tokenizer, conv, add_generation_prompt=add_generation_prompt)
        for conv in conversations
    ]
    return pad_batch(
        ids,
        pad_id=tokenizer_pad_id(tokenizer) if pad_id is None else int(pad_id),
        multiple_of=multiple_of,
        length=length,
    )


def decode(tokenizer: Any, output: Any, *, skip_special_tokens: bool = True) -> list[str]:
    """One string per row of a `GenerateOutput`: its first `lengths[b]` tokens, detokenized."""
    tokens = np.asarray(output.tokens)
    lengths = np.asarray(output.lengths)
    return [
        tokenizer.decode(tokens[b, : lengths[b]].tolist(), skip_special_tokens=skip_special_tokens)
        for b in range(tokens.shape[0])
    ]
