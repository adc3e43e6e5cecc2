"""Token datasets for the model-backed activation source: a text file, a JSONL or a `.npy`.

`load_tokens(path, *, seq_len, tokenizer=None, ...)` returns `Int[S, T]` windows of T = seq_len
token ids, each starting with BOS when a `bos_token_id` is given:

- `.npy`: pre-tokenised ids, either `[S, T']` rows (cut to seq_len) or one flat `[n]` stream;
- `.txt` / `.text`: UTF-8 text, documents separated by blank lines;
- `.jsonl`: one JSON object per line, the document under `text_field`.

`byte_tokenizer(vocab_size)` stands in for a tokenizer when a model has none. Documents are
tokenised (`tokenizer.encode(text)` of an HF tokenizer, or any callable from text
to ids), joined into one stream with `eos_token_id` between documents when given, and cut into
windows. Nothing is downloaded: the user points at a corpus, the tests use a file the project
ships.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np


class TokenFileNotFoundError(FileNotFoundError):
    """The token dataset path does not exist."""


class TokenDatasetError(ValueError):
    """A token dataset file cannot be read as the format its suffix names."""


def byte_tokenizer(vocab_size: int) -> Callable[[str], list[int]]:
    """A tokenizer for a model without one (e.g. `jaxlens.ModelConfig.tiny()`): UTF-8 bytes
    folded into ids 3..vocab_size-1, leaving 0, 1, 2 for pad, BOS and EOS."""
    if vocab_size <= 3:
        raise TokenDatasetError(f"byte_tokenizer needs vocab_size > 3; got {vocab_size}")
    return lambda text: [3 + b % (vocab_size - 3) for b in text.encode("utf-8")]


def _encoder(tokenizer: Any) -> Callable[[str], Sequence[int]]:
    if tokenizer is None:
        raise TokenDatasetError("a text or JSONL dataset needs a tokenizer; got tokenizer=None")
    if _hf(tokenizer):  # an HF tokenizer: BOS/EOS are placed by `load_tokens`, not by it
        return lambda text: tokenizer.encode(text, add_special_tokens=False)
    if hasattr(tokenizer, "encode"):
        return tokenizer.encode
    if callable(tokenizer):
        return tokenizer
    raise TokenDatasetError(
        f"tokenizer must have .encode(text) or be callable; got {type(tokenizer).__name__}"
    )


def _hf(tokenizer: Any) -> bool:
    return hasattr(tokenizer, "convert_tokens_to_ids")


def _text_documents(path: Path) -> Iterator[str]:
    text = path.read_text(encoding="utf-8")
    for doc in text.split("\n\n"):
        if doc.strip():
            yield doc.strip()


def _jsonl_documents(path: Path, text_field: str) -> Iterator[str]:
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise TokenDatasetError(f"{path}:{number} is not valid JSON ({err.msg})") from None
            if not isinstance(record, dict) or not isinstance(record.get(text_field), str):
                raise TokenDatasetError(
                    f"{path}:{number} must be an object with a string field {text_field!r}"
                )
            yield record[text_field]


def _windows(stream: np.ndarray, seq_len: int, bos: int | None) -> np.ndarray:
    body = seq_len - (bos is not None)
    n = len(stream) // body
    if n == 0:
        raise TokenDatasetError(
            f"the dataset has {len(stream)} tokens, fewer than one window of {body}"
        )
    rows = stream[: n * body].reshape(n, body)
    if bos is not None:
        rows = np.concatenate([np.full((n, 1), bos, rows.dtype), rows], axis=1)
    return rows


def load_tokens(
    path: str | os.PathLike,
    *,
    seq_len: int,
    tokenizer: Any = None,
    bos_token_id: int | None = None,
    eos_token_id: int | None = None,
    text_field: str = "text",
    vocab_size: int | None = None,
) -> np.ndarray:
    """Token windows `Int[S, seq_len]` from a `.txt`, `.jsonl` or `.npy` file (module docstring).

    Raises:
        TokenFileNotFoundError: `path` does not exist.
        TokenDatasetError: the file is not what its suffix says, or ids fall outside
            `[0, vocab_size)` when `vocab_size` is given.
    """
    path = Path(path)
    if not path.is_file():
        raise TokenFileNotFoundError(f"token dataset {path} does not exist")
    if not isinstance(seq_len, int) or seq_len < 2:
        raise TokenDatasetError(f"seq_len must be an int >= 2; got {seq_len!r}")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            ids = np.load(path, allow_pickle=False)
        except ValueError as err:
            raise TokenDatasetError(f"{path} is not a readable .npy array ({err})") from None
        if not np.issubdtype(ids.dtype, np.integer):
            raise TokenDatasetError(f"{path} must hold integer token ids; got dtype {ids.dtype}")
        if ids.ndim == 2:
            if ids.shape[1] < seq_len:
                raise TokenDatasetError(
                    f"{path} has rows of {ids.shape[1]} tokens; seq_len={seq_len} needs more"
                )
            rows = ids[:, :seq_len]
        elif ids.ndim == 1:
            rows = _windows(ids, seq_len, bos_token_id)
        else:
            raise TokenDatasetError(f"{path} must be [S, T] or [n]; got shape {ids.shape}")
    elif suffix in (".txt", ".text", ".jsonl"):
        encode = _encoder(tokenizer)
        docs = _jsonl_documents(path, text_field) if suffix == ".jsonl" else _text_documents(path)
        pieces: list[np.ndarray] = []
        for doc in docs:
            pieces.append(np.asarray(list(encode(doc)), np.int64))
            if eos_token_id is not None:
                pieces.append(np.asarray([eos_token_id], np.int64))
        if not pieces:
            raise TokenDatasetError(f"{path} holds no documents")
        rows = _windows(np.concatenate(pieces), seq_len, bos_token_id)
    else:
        raise TokenDatasetError(f"{path}: unknown suffix {suffix!r}; expected .txt, .jsonl or .npy")
    rows = np.asarray(rows, np.int32)
    if vocab_size is not None and (rows.min() < 0 or rows.max() >= vocab_size):
        raise TokenDatasetError(
            f"{path} has token ids in [{rows.min()}, {rows.max()}], outside [0, {vocab_size})"
        )
    return rows
