"""The built-in model's recipe, apart from its corpus: its shape (`builtin_config`, with the
corpus tokenizer's `special_ids`), packing conversations into training windows without cutting
any of them (`pack_windows`), and the model card (`model_card`, the `CARD` template). See
`jaxlens.builtin` for the whole picture."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from jaxlens.config import ModelConfig

BUILTIN_MODEL = Path(__file__).resolve().parent / "model"


class PackingError(ValueError):
    """Documents that cannot be packed into training windows."""


def builtin_config(
    *,
    vocab_size: int,
    d_model: int = 256,
    n_layers: int = 6,
    d_ff: int = 704,
    head_dim: int = 32,
    max_seq_len: int = 2048,
    special: dict[str, int] | None = None,
) -> ModelConfig:
    """The built-in model's shape: a Llama with GQA (2 query heads per key/value head) and rope.

    `special` gives `bos`, `eos` (the chat turn end, `<|im_end|>`) and `pad` token ids.
    """
    special = special or {}
    n_heads = d_model // head_dim
    return ModelConfig(
        arch="llama",
        vocab_size=vocab_size,
        d_model=d_model,
        n_layers=n_layers,
        n_heads=n_heads,
        n_kv_heads=max(n_heads // 2, 1),
        head_dim=head_dim,
        d_ff=d_ff,
        max_seq_len=max_seq_len,
        rope_theta=10000.0,
        tie_embeddings=True,
        bos_token_id=special.get("bos"),
        eos_token_ids=tuple(special.get("eos", ())),
        pad_token_id=special.get("pad"),
    )


class Packed(NamedTuple):
    """`tokens [S, T]` int32 windows, `loss_mask [S, T]` float32 loss weights (0 = not
    learned) and `segments [S, T]` int32 document ids (the prose that fills a window's end is
    one more document), for `fit_lm(..., segments=...)`."""

    tokens: np.ndarray
    loss_mask: np.ndarray
    segments: np.ndarray


def _check_packing(documents, filler, seq_len, masks, filler_weight) -> None:
    long = [i for i, d in enumerate(documents) if len(d) > seq_len]
    if long:
        raise PackingError(
            f"{len(long)} documents are longer than seq_len={seq_len} (the longest has "
            f"{max(len(documents[i]) for i in long)} tokens): raise seq_len or shorten them"
        )
    if not filler or not any(len(f) for f in filler):
        raise PackingError("pack_windows: expected non-empty filler texts")
    if not 0 <= filler_weight <= 1:
        raise PackingError(f"pack_windows: filler_weight={filler_weight}, expected 0..1")
    if masks is not None and [len(m) for m in masks] != [len(d) for d in documents]:
        raise PackingError("pack_windows: expected one mask entry per document token")


def _place(documents, masks, order, seq_len):
    """First-fit in `order`: `(windows, loss weights, document lengths per window)`."""
    windows: list[list[int]] = []
    learn: list[list[float]] = []
    lengths: list[list[int]] = []  # of the documents in each window
    for i in order:
        doc = list(documents[i])
        if not windows or len(windows[-1]) + len(doc) > seq_len:
            windows.append([])
            learn.append([])
            lengths.append([])
        lengths[-1].append(len(doc))
        windows[-1].extend(doc)
        learn[-1].extend([1.0] * len(doc) if masks is None else [float(b) for b in masks[i]])
    return windows, learn, lengths


def _fill(windows, learn, stream, seq_len, weight) -> None:
    """Fills each window's end from the token `stream` (cycling), at loss weight `weight`."""
    cursor = 0
    for w, m in zip(windows, learn, strict=True):
        need = seq_len - len(w)
        while need > 0:
            take = stream[cursor : cursor + need]
            cursor = (cursor + len(take)) % len(stream)
            w.extend(take)
            m.extend([weight] * len(take))
            need = seq_len - len(w)


def pack_windows(
    documents: Sequence[Sequence[int]],
    filler: Sequence[Sequence[int]],
    *,
    seq_len: int,
    seed: int,
    masks: Sequence[Sequence[bool]] | None = None,
    filler_weight: float = 1.0,
) -> Packed:
    """Packs whole documents into `[S, seq_len]` windows, no document cut in two.

    Documents are shuffled (seeded) and placed first-fit into windows; the space left at the end
    of each window is filled with `filler` texts (plain prose, which may be cut anywhere), so no
    window holds padding. Without `masks` every document token is learned; with `masks` (one
    bool per document token, e.g. true on chat replies) only those are. The filler prose
    weighs `filler_weight` either way (below 1 keeps prose from drowning out the replies). A
    document longer than `seq_len` raises `PackingError`.
    """
    rng = np.random.default_rng(seed)
    _check_packing(documents, filler, seq_len, masks, filler_weight)
    windows, learn, lengths = _place(documents, masks, rng.permutation(len(documents)), seq_len)
    stream = [t for f in (filler[j] for j in rng.permutation(len(filler))) for t in f]
    _fill(windows, learn, stream, seq_len, filler_weight)
    shape = (len(windows), seq_len)
    # document i of a window is segment i; the filler prose after them is one more
    segments = [np.repeat(np.arange(len(n) + 1), [*n, seq_len - sum(n)]) for n in lengths]
    return Packed(
        np.asarray(windows, np.int32).reshape(shape),
        np.asarray(learn, np.float32).reshape(shape),
        np.asarray(segments, np.int32).reshape(shape),
    )


def card_params(config: ModelConfig) -> int:
    """The parameter count the model card states (tied embeddings, no biases)."""
    per_layer = (
        config.d_model * config.head_dim * (config.n_heads * 2 + config.n_kv_heads * 2)
        + 3 * config.d_model * config.d_ff
        + 2 * config.d_model
    )
    return config.vocab_size * config.d_model + config.n_layers * per_layer + config.d_model


def _history(stages: Sequence[dict]) -> str:
    """The card's table of training runs, when the weights come from more than one."""
    if len(stages) <= 1:
        return ""
    keys = list(dict.fromkeys(k for st in stages for k in st))
    table = "\n".join("| " + " | ".join(str(st.get(k, "")) for k in keys) + " |" for st in stages)
    total = sum(st.get("seconds", 0) for st in stages)
    return (
        f"\n\nThe weights come from {len(stages)} runs, each continuing the previous one "
        f"(`--init`), {total:,} s of training in all:\n\n"
        f"| {' | '.join(keys)} |\n|{'---|' * len(keys)}\n{table}"
    )


CARD = """---
license: apache-2.0
library_name: transformers
tags: [llama, jaxlens, interpretability, self-play]
---

# jaxlens built-in model

A {n_params_m:.1f}M-parameter Llama ({c.n_layers} layers, d_model {c.d_model},
{c.n_heads} query / {c.n_kv_heads} key-value heads, rope, tied embeddings, vocabulary
{c.vocab_size}, ChatML chat template) trained from scratch by `scripts/train_builtin.py` of
[jaxlens](https://pypi.org/project/jaxlens/) on a corpus the project generates. It is the
default model of every jaxlens script: small enough to run the personality study, the SAE
feature analysis and SPIRAL self-play on a laptop CPU, and trained so that what those studies
measure is really there.

## Training data (all generated, deterministic given the seed)

{parts}

## Training

{training}{history}

## What it can do

| measure | value |
|---|---|
{rows}

## What it cannot do

It knows nothing outside its corpus: no facts, no general instructions beyond the ten generic
ones, no games beyond the three. Its personas and characters are invented. Use it to test and
demonstrate methods, not to draw conclusions about large language models.
"""


def model_card(
    config: ModelConfig,
    *,
    corpus: dict[str, Any],
    training: dict[str, Any],
    results: dict,
    stages: Sequence[dict] = (),
) -> str:
    """The model card (`README.md` of the model directory): what it is and what it can do.
    `stages`: every training run behind the weights, oldest first (listed when there are
    several, e.g. a run continued with `--init`)."""
    return CARD.format(
        c=config,
        n_params_m=card_params(config) / 1e6,
        parts="\n".join(f"- **{k}**: {v}" for k, v in corpus.items()),
        training="\n".join(f"- {k}: {v}" for k, v in training.items()),
        history=_history(stages),
        rows="\n".join(f"| {k} | {v} |" for k, v in results.items()),
    )


def special_ids(tokenizer: Any) -> dict[str, Any]:
    """`builtin_config`'s `special` ids from the corpus tokenizer: `<s>`, `<|im_end|>` (the
    end of a chat turn) and its pad."""
    return {
        "bos": tokenizer.convert_tokens_to_ids("<s>"),
        "eos": (tokenizer.convert_tokens_to_ids("<|im_end|>"),),
        "pad": tokenizer.pad_token_id,
    }
