"""The corpus as training documents: rendered, tokenised, weighted and packed; and the
held-out perplexity over such documents.

- `chatml(conversation)`: the ChatML text of a conversation (`tokenizer_texts` lists every
  text of a corpus, what the byte-level BPE is trained on).
- `tokenize(tokenizer, parts, move_weight)`: token ids per document, each with loss weights:
  1 on chat replies (assistant turns), 0 on prompts, 1 on plain text; in game replies the
  tokens after the first sentence (which restates the legal set), that is the reason and the
  move, weigh `move_weight`.
- `pack_corpus(ids, ...)`: the conversations packed whole into windows
  (`jaxlens.builtin.pack_windows`) with the plain text filling each window's end; a
  conversation longer than the window is dropped (and counted).
- `heldout_perplexity(params, config, docs, seq_len)`: exp of the mean next-token loss over
  the learned tokens of held-out documents.

A document is `(ids, weights)`: `list[int]` and one loss weight per token.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxlens.builtin.recipe import Packed, pack_windows
from jaxlens.config import ModelConfig
from jaxlens.logprobs import token_logprobs

ASSISTANT = "<|im_start|>assistant\n"  # the header every chat reply starts with
END_OF_TURN = "<|im_end|>"
CHAT_PARTS = ("personas", "games")  # the parts made of conversations; the rest is plain text

Document = tuple[list[int], list[float]]


def chatml(conversation: list[dict]) -> str:
    """The ChatML text of a conversation."""
    # The layout of `jaxlens.hf.CHATML_TEMPLATE`, written out: the tokenizer is trained on these
    # texts before any tokenizer (and so its template) exists.
    return "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in conversation)


def tokenizer_texts(parts: dict[str, list]) -> list[str]:
    """Every text of the corpus: the conversations in ChatML, then the plain text."""
    return [chatml(c) for k in CHAT_PARTS for c in parts[k]] + parts["stories"]


def reason_starts(tokenizer: Any, messages: list[dict]) -> list[int | None]:
    """Per message, the token index (header included) where a reply's first sentence ends;
    None for prompts and for replies of a single sentence. One batched tokenizer call."""
    cuts = [m["content"].find(". ") + 1 if m["role"] == "assistant" else 0 for m in messages]
    heads = [ASSISTANT + m["content"][:c] for m, c in zip(messages, cuts, strict=True) if c]
    lengths = iter(
        map(len, tokenizer(heads, add_special_tokens=False)["input_ids"] if heads else [])
    )
    return [next(lengths) if c else None for c in cuts]


def _conversations(
    tokenizer: Any, docs: list[list[dict]], move_weight: float | None
) -> list[Document]:
    """Chat documents; `move_weight` (None: 1) weighs each reply after its first sentence.

    Messages are tokenized one by one: each ends at a special token, so the ids equal those of
    the whole rendered conversation."""
    header = len(tokenizer(ASSISTANT, add_special_tokens=False)["input_ids"])
    flat = [m for c in docs for m in c]
    ids = iter(tokenizer([chatml([m]) for m in flat], add_special_tokens=False)["input_ids"])
    weigh = move_weight is not None
    starts = iter(reason_starts(tokenizer, flat) if weigh else [None] * len(flat))
    out = []
    for conv in docs:
        toks, weights = [], []
        for m in conv:
            part, k = next(ids), next(starts)
            reply = float(m["role"] == "assistant")
            w = [0.0] * header + [reply] * (len(part) - header)
            if k is not None:
                w[k:] = [move_weight] * (len(part) - k)
            toks += part
            weights += w
        out.append((toks, weights))
    return out


def tokenize(
    tokenizer: Any, parts: dict[str, list], move_weight: float = 1.0
) -> dict[str, list[Document]]:
    """Token ids and loss weights per document of each part (see the module docstring)."""
    eos = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    out = {}
    for name, docs in parts.items():
        if name == "stories":
            ids = tokenizer(list(docs), add_special_tokens=False)["input_ids"]
            out[name] = [(d + [eos], [1.0] * (len(d) + 1)) for d in ids]
            continue
        weigh = name == "games" and move_weight != 1.0
        out[name] = _conversations(tokenizer, docs, move_weight if weigh else None)
    return out


def pack_corpus(
    ids: dict[str, list[Document]],
    *,
    seq_len: int,
    seed: int,
    replies_only: bool = True,
    prose_weight: float = 1.0,
) -> tuple[Packed, int]:
    """`(packed windows, conversations dropped)`: the conversations that fit in `seq_len`,
    packed whole, the plain text filling each window's end at `prose_weight`. With
    `replies_only` the conversations' loss weights go along (else every token of theirs is
    learned)."""
    chats = [d for k in CHAT_PARTS for d in ids[k]]
    documents = [d for d in chats if len(d[0]) <= seq_len]
    packed = pack_windows(
        [d for d, _ in documents],
        [d for d, _ in ids["stories"]],
        seq_len=seq_len,
        seed=seed,
        masks=[m for _, m in documents] if replies_only else None,
        filler_weight=prose_weight,
    )
    return packed, len(chats) - len(documents)


def heldout_perplexity(
    params: Any, config: ModelConfig, docs: list[Document], seq_len: int
) -> float:
    """exp(mean next-token loss) over the learned tokens (weight > 0) of held-out documents,
    one padded batch of `seq_len` columns each 16 documents."""
    total, count = 0.0, 0
    score = jax.jit(lambda p, t, m: token_logprobs(p, t, config=config, attention_mask=m))
    for i in range(0, len(docs), 16):
        chunk = docs[i : i + 16]
        tokens = np.zeros((len(chunk), seq_len), np.int32)
        mask, learn = np.zeros_like(tokens), np.zeros(tokens.shape, bool)
        for r, (d, m) in enumerate(chunk):
            tokens[r, : len(d)], mask[r, : len(d)], learn[r, : len(d)] = d[:seq_len], 1, m[:seq_len]
        lp = np.asarray(score(params, jnp.asarray(tokens), jnp.asarray(mask)))
        valid = learn[:, 1:] & (mask[:, :-1] > 0)
        total += float(-(lp * valid).sum())
        count += int(valid.sum())
    return float(np.exp(total / max(count, 1)))
