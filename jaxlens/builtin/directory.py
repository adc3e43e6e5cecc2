"""Writing the built-in model's directory: what `scripts/train_builtin.py` leaves behind.

`save_model_dir(out, config, params, tokenizer, card=..., stages=...)` writes a Hugging Face
directory whole or not at all (into `<out>.tmp`, then renamed): bfloat16 safetensors and
`config.json` (`jaxlens.save_hf`), the tokenizer, the model card (`README.md`) and
`training_stages.json`, the list of every training run behind the weights, oldest first, which
a run continued with `--init` reads back (`earlier_stages`) and extends.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from jaxlens.config import ModelConfig
from jaxlens.hf import save_hf

STAGES_FILE = "training_stages.json"  # every run that led to these weights, oldest first
LOAD_TIME_KEYS = ("is_local", "local_files_only")


def earlier_stages(init: str | os.PathLike | None) -> list[dict]:
    """The training runs behind the weights in `init` (none for a random init)."""
    if init is None:
        return []
    f = Path(init) / STAGES_FILE
    if not f.exists():
        return [{"command": f"(weights from {init}, history unknown)"}]
    return json.loads(f.read_text())


def drop_load_time_keys(path: Path) -> None:
    """A tokenizer loaded from a local directory (`--init`) saves how it was loaded
    ("is_local", "local_files_only"); those describe this machine, not the model."""
    cfg = json.loads(path.read_text())
    for key in LOAD_TIME_KEYS:
        cfg.pop(key, None)
    path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")


def save_model_dir(
    out: str | os.PathLike,
    config: ModelConfig,
    params: Any,
    tokenizer: Any,
    *,
    card: str,
    stages: list[dict],
) -> None:
    """Writes the model directory `out` (see the module docstring); readers never see a
    half-written model."""
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    bf16 = config.replace(param_dtype="bfloat16")
    save_hf(tmp, bf16, jax.tree.map(lambda x: x.astype(jnp.bfloat16), params))
    tokenizer.save_pretrained(tmp)
    drop_load_time_keys(tmp / "tokenizer_config.json")
    (tmp / "README.md").write_text(card)
    (tmp / STAGES_FILE).write_text(json.dumps(stages, indent=1) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
