"""Tokenizers: the HF tokenizer of a checkpoint directory, chat prompts, left-padded batches.

`load_tokenizer` reads only local files (`local_files_only=True`) and never runs repository
code (`trust_remote_code=False`). `check_vocab` refuses a tokenizer that can emit ids the model's
embedding does not have (a tokenizer smaller than the embedding is normal: tables are padded).
`apply_chat_template` returns token ids whatever the transformers version returns (list or
`BatchEncoding`). `left_pad` builds the `[B, T]` tokens and attention mask that `forward` and
`generate` take: prompts end at the last column, so the next token is always at `T`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxlens.config import ModelConfig


class TokenizerNotFoundError(FileNotFoundError):
    """No tokenizer files in the given directory."""


class VocabMismatchError(ValueError):
    """A tokenizer whose ids do not fit the model's vocabulary."""


class ChatTemplateError(ValueError):
    """A tokenizer without a chat template, or messages the template cannot take."""


def check_vocab(tokenizer: Any, config: ModelConfig) -> None:
    """Raises `VocabMismatchError` if the tokenizer has ids >= `config.vocab_size`."""
    n = len(tokenizer)
    if n > config.vocab_size:
        raise VocabMismatchError(
            f"tokenizer {getattr(tokenizer, 'name_or_path', '')!r} has {n} tokens (ids up to "
            f"{n - 1}) but config vocab_size is {config.vocab_size}: expected at most that many"
        )


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def has_tokenizer(path: str | os.PathLike) -> bool:
    """Whether a directory holds tokenizer files (any of `TOKENIZER_FILES`)."""
    return any((Path(path) / name).is_file() for name in TOKENIZER_FILES)


def load_tokenizer(path: str | os.PathLike, *, config: ModelConfig | None = None) -> Any:
    """The HF tokenizer stored in a checkpoint directory (checked against `config` if given)."""
    from transformers import AutoTokenizer

    root = Path(path)
    if not root.is_dir():
        raise TokenizerNotFoundError(f"{root}: tokenizer directory does not exist")
    if not has_tokenizer(root):
        raise TokenizerNotFoundError(
            f"{root}: no tokenizer files (expected one of {TOKENIZER_FILES})"
        )
    tokenizer = AutoTokenizer.from_pretrained(root, trust_remote_code=False, local_files_only=True)
    if config is not None:
        check_vocab(tokenizer, config)
    return tokenizer


# Tokens that end an assistant turn in the chat templates we meet: ChatML and Qwen (`<|im_end|>`,
# Qwen's eos `<|endoftext|>`), Llama 3 (`<|eot_id|>`, `<|eom_id|>` for tool calls, eos
# `<|end_of_text|>`), Mistral and Llama 2 (`</s>`). Only those the tokenizer knows count.
END_OF_TURN_TOKENS = (
    "<|im_end|>",
    "<|endoftext|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|end_of_text|>",
    "</s>",
)


def stop_ids(tokenizer: Any, config: ModelConfig | None = None) -> tuple[int, ...]:
    """The ids that end a generated reply: every end-of-turn token of `END_OF_TURN_TOKENS` the
    tokenizer has as a single special token, its eos, and the model config's eos ids (a Llama 3
    `config.json` lists `<|eot_id|>` there). Raises `ChatTemplateError` when there is none."""
    ids = []
    unk = getattr(tokenizer, "unk_token_id", None)
    vocab = tokenizer.get_vocab()
    for name in END_OF_TURN_TOKENS:
        i = vocab.get(name)
        if isinstance(i, int) and i != unk:
            ids.append(i)
    eos = getattr(tokenizer, "eos_token_id", None)
    if isinstance(eos, int):
        ids.append(eos)
    if config is not None:
        ids.extend(int(i) for i in config.eos_token_ids)
    if not ids:
        raise ChatTemplateError(
            f"tokenizer {getattr(tokenizer, 'name_or_path', '')!r} has no eos token and none of "
            f"{END_OF_TURN_TOKENS}: expected one to end replies"
        )
    return tuple(sorted(set(ids)))


def tokenizer_pad_id(tokenizer: Any) -> int:
    """The id written into left padding: the tokenizer's pad, else its eos, else 0. Padded
    columns are masked out, so the choice never changes a result, only what a dump shows."""
    for name in ("pad_token_id", "eos_token_id"):
        value = getattr(tokenizer, name, None)
        if isinstance(value, int):
            return value
    return 0


def apply_chat_template(
    tokenizer: Any, messages: Sequence[dict[str, str]], add_generation_prompt: bool = True
) -> list[int]:
    """Token ids of a conversation rendered by the tokenizer's chat template.

    Args:
      messages: `[{"role": "system"|"user"|"assistant", "content": str}, ...]`.
      add_generation_prompt: end with the assistant-turn header, ready to generate.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise ChatTemplateError(
            f"tokenizer {getattr(tokenizer, 'name_or_path', '')!r} has no "
            "chat_template (expected one in tokenizer_config.json or "
            "chat_template.jinja)"
        )
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not {"role", "content"} <= set(m):
            raise ChatTemplateError(
                f"messages[{i}]={m!r}: expected a dict with 'role' and 'content'"
            )
    out = tokenizer.apply_chat_template(
        list(messages), add_generation_prompt=add_generation_prompt, tokenize=True
    )
    ids = out["input_ids"] if hasattr(out, "keys") else out
    return [int(i) for i in ids]


def left_pad(
    sequences: Sequence[Sequence[int]], pad_id: int, length: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """`tokens, mask [B, T]` (int32): each row right-aligned, pads on the left, mask 0 there."""
    if not sequences:
        raise ValueError("left_pad: expected at least one sequence")
    t = max(len(s) for s in sequences) if length is None else length
    tokens = np.full((len(sequences), t), pad_id, np.int32)
    mask = np.zeros((len(sequences), t), np.int32)
    for row, seq in enumerate(sequences):
        if len(seq) > t:
            raise ValueError(f"left_pad: sequence {row} has {len(seq)} tokens > length={t}")
        if len(seq):
            tokens[row, t - len(seq) :] = np.asarray(seq, np.int32)
            mask[row, t - len(seq) :] = 1
    return tokens, mask


# A minimal ChatML-style template for tokenizers trained here (real checkpoints bring their own).
CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<|im_start|>", "<|im_end|>")


def train_tokenizer(
    texts: Sequence[str], *, vocab_size: int, path: str | os.PathLike | None = None
) -> Any:
    """Trains a byte-level BPE tokenizer on `texts` (offline tiny models, tests, examples).

    Ids 0-4 are `<pad> <s> </s> <|im_start|> <|im_end|>`; the chat template is ChatML. With
    `path`, the tokenizer is saved there so that `load_tokenizer(path)` reads it back.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab_size < 256 + len(SPECIAL_TOKENS):
        raise ValueError(
            f"vocab_size={vocab_size}: a byte-level BPE needs at least "
            f"{256 + len(SPECIAL_TOKENS)} (256 bytes + special tokens)"
        )
    if not texts or not any(t.strip() for t in texts):
        raise ValueError("train_tokenizer: expected at least one non-empty text")
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        additional_special_tokens=list(SPECIAL_TOKENS[3:]),
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    if path is not None:
        Path(path).mkdir(parents=True, exist_ok=True)
        tokenizer.save_pretrained(path)
    return tokenizer
