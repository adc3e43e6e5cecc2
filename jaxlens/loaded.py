"""A checkpoint loaded for use: the one place every study and script gets its model from.

`load_model(path, *, dtype=None, mesh=None)` reads a Hugging Face checkpoint directory into a
`LoadedModel`: the frozen `config`, the `params` (placed straight into their shards when a mesh
is given), the directory's `tokenizer` (checked against the vocabulary), and the `mesh`. What
every caller used to work out for itself is derived here once, by one rule:

- `stop_tokens`: the ids that end a reply (`generate(..., stop_tokens=model.stop_tokens)`)
  by `jaxlens.hf.stop_ids`: ChatML/Qwen `<|im_end|>`,
  Llama 3 `<|eot_id|>`, the tokenizer's eos and the config's eos ids);
- `pad_id`: the id written into left padding (`jaxlens.hf.tokenizer_pad_id`);
- `put(x)`: a host batch `[B, ...]` placed for the model (one device, or batch-sharded over the
  mesh's `data` x `fsdp` axes).

`params` are a field like any other, so a learner can carry its own copy
(`dataclasses.replace(model, params=new)`) without reloading.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path
from typing import Any

import jax

from jaxlens.config import ModelConfig
from jaxlens.hf.io import CheckpointNotFoundError, load_hf
from jaxlens.hf.tokenizer import (
    check_vocab,
    has_tokenizer,
    load_tokenizer,
    stop_ids,
    tokenizer_pad_id,
)
from jaxlens.sharding import put_batch


@dataclasses.dataclass(frozen=True, eq=False)
class LoadedModel:
    """A model ready to run: `config`, `params`, `tokenizer`, `mesh` (None: one device) and the
    directory it came from (`path`, None for a model built in memory). `tokenizer` is None only
    for a bare checkpoint loaded with `require_tokenizer=False`."""

    config: ModelConfig
    params: Any
    tokenizer: Any
    mesh: Any = None
    path: Path | None = None

    @functools.cached_property
    def stop_tokens(self) -> tuple[int, ...]:
        """Ids that end a reply (see the module docstring)."""
        return stop_ids(self.tokenizer, self.config)

    @property
    def pad_id(self) -> int:
        """The id written into left padding."""
        return tokenizer_pad_id(self.tokenizer)

    def put(self, x: Any) -> jax.Array:
        """A host batch `[B, ...]` on the model's device(s): batch-sharded on a mesh
        (`jaxlens.sharding.put_batch`)."""
        return put_batch(x, self.mesh)


def load_model(
    path: str | os.PathLike,
    *,
    dtype: Any = None,
    mesh: Any = None,
    layout: str = "fsdp",
    require_tokenizer: bool = True,
) -> LoadedModel:
    """A checkpoint directory (safetensors, `config.json`, tokenizer files) as a `LoadedModel`.

    Args:
      path: the directory (`jaxlens.BUILTIN_MODEL` for the built-in model).
      dtype: compute dtype (any spelling `jaxlens.canonical_dtype` takes); default the
        checkpoint's own.
      mesh: a `jax.sharding.Mesh` (`jaxlens.sharding.make_mesh` / `parse_mesh`); the weights
        load straight into their shards and `put` shards batches over it.
      layout: `"fsdp"` or `"tensor"` (`jaxlens.sharding.RULES`).
      require_tokenizer: False accepts a bare checkpoint (weights and `config.json` only):
        `tokenizer` is then None when the directory has no tokenizer files.

    Raises:
      CheckpointNotFoundError: `path` is not a directory.
      TokenizerNotFoundError: no tokenizer files and `require_tokenizer`.
    """
    root = Path(path)
    if not root.is_dir():
        raise CheckpointNotFoundError(f"model: no checkpoint directory at {root}")
    if require_tokenizer or has_tokenizer(root):
        tokenizer = load_tokenizer(root)  # before the weights: a missing one fails in seconds
    else:
        tokenizer = None
    config, params = load_hf(root, dtype=dtype, mesh=mesh, layout=layout)
    if tokenizer is not None:
        check_vocab(tokenizer, config)
    return LoadedModel(config, params, tokenizer, mesh, root)
