"""The Hugging Face boundary: everything that reads or writes HF files lives here.

    config.py       HF `config.json` <-> `ModelConfig` (refuses what it does not implement)
    keys.py         the config keys it reads, those it knowingly ignores, and the rule for others
    names.py        where each leaf of our params lives in a HF checkpoint (one table)
    safetensors.py  a slice-reading safetensors reader and a streaming writer
    io.py           `load_hf` / `save_hf`: checkpoint directories <-> `(config, params)`
    tokenizer.py    HF tokenizers, chat templates, left-padded batches, `train_tokenizer`

The rest of jaxlens never touches HF formats; `jaxlens.load_hf`, `jaxlens.save_hf`,
`jaxlens.load_tokenizer`, `jaxlens.apply_chat_template` and `jaxlens.left_pad` re-export the
entry points.
"""

from jaxlens.hf.config import config_from_hf, config_to_hf
from jaxlens.hf.io import (
    CheckpointError,
    CheckpointNotFoundError,
    CorruptCheckpointError,
    load_config,
    load_hf,
    save_hf,
)
from jaxlens.hf.keys import HANDLED, IGNORED
from jaxlens.hf.tokenizer import (
    CHATML_TEMPLATE,
    END_OF_TURN_TOKENS,
    SPECIAL_TOKENS,
    ChatTemplateError,
    TokenizerNotFoundError,
    VocabMismatchError,
    apply_chat_template,
    check_vocab,
    left_pad,
    load_tokenizer,
    stop_ids,
    tokenizer_pad_id,
    train_tokenizer,
)

__all__ = [
    "CHATML_TEMPLATE",
    "END_OF_TURN_TOKENS",
    "SPECIAL_TOKENS",
    "HANDLED",
    "IGNORED",
    "ChatTemplateError",
    "CheckpointError",
    "CheckpointNotFoundError",
    "CorruptCheckpointError",
    "TokenizerNotFoundError",
    "VocabMismatchError",
    "apply_chat_template",
    "check_vocab",
    "config_from_hf",
    "config_to_hf",
    "left_pad",
    "load_config",
    "load_hf",
    "load_tokenizer",
    "save_hf",
    "stop_ids",
    "tokenizer_pad_id",
    "train_tokenizer",
]
