"""The built-in model: a small Llama trained by this project, shipped inside the package.

`BUILTIN_MODEL` is the path of its Hugging Face directory, `jaxlens/builtin/model/`
(safetensors weights, `config.json`, a tokenizer with a ChatML chat template, and a model card,
`README.md`). Load it like any checkpoint: `jaxlens.load_model(jaxlens.BUILTIN_MODEL)`,
`jaxlens.load_hf(...)`, or `transformers.AutoModelForCausalLM.from_pretrained(...)`. Every
script's `--model` defaults to it.

It is trained by `scripts/train_builtin.py` on a corpus the project generates (persona
conversations from `jaxlens.personality`, game turns from `rl.transcripts`, plain text from
`sae.stories`). The parts of that recipe that live here:

- `jaxlens.builtin.recipe`: the model's shape (`builtin_config`), packing documents into
  training windows without cutting any of them (`pack_windows`), the model card (`model_card`);
- `jaxlens.builtin.training`: `fit_lm`, the next-token trainer (one jitted step, a `lax.scan`
  over steps) used for the built-in model and for the tiny models tests build.
"""

from jaxlens.builtin.recipe import (
    BUILTIN_MODEL,
    Packed,
    PackingError,
    builtin_config,
    model_card,
    pack_windows,
)

__all__ = [
    "BUILTIN_MODEL",
    "Packed",
    "PackingError",
    "builtin_config",
    "model_card",
    "pack_windows",
]
