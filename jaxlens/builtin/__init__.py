"""The built-in model: a small Llama trained by this project, shipped inside the package.

`BUILTIN_MODEL` is the path of its Hugging Face directory, `jaxlens/builtin/model/`
(safetensors weights, `config.json`, a tokenizer with a ChatML chat template, and a model card,
`README.md`). Load it like any checkpoint: `jaxlens.load_model(jaxlens.BUILTIN_MODEL)`,
`jaxlens.load_hf(...)`, or `transformers.AutoModelForCausalLM.from_pretrained(...)`. Every
script's `--model` defaults to it.

It is trained by `scripts/train_builtin.py` on a corpus the project generates (persona
conversations from `jaxlens.personality`, game turns from `rl.transcripts`, plain text from
`sae.stories`). The recipe lives here, one job per module:

- `jaxlens.builtin.corpus`: which documents, how many, drawn how (`CorpusRecipe`,
  `build_corpus`); the game-turn and story generators come in as arguments, since `jaxlens`
  never imports `rl` or `sae`;
- `jaxlens.builtin.documents`: the corpus rendered in ChatML, tokenised with per-token loss
  weights, packed into windows (`pack_corpus`), and the held-out perplexity;
- `jaxlens.builtin.recipe`: the model's shape (`builtin_config`), packing documents into
  training windows without cutting any of them (`pack_windows`), the model card (`model_card`);
- `jaxlens.builtin.training`: `fit_lm`, the next-token trainer (one jitted step, a `lax.scan`
  over steps) used for the built-in model and for the tiny models tests build;
- `jaxlens.builtin.directory`: writing the model directory (bfloat16 weights, tokenizer, card,
  the history of training runs);
- `jaxlens.builtin.rng`: `pick`, the corpus generators' one seeded choice.

Only `recipe` is imported with this package (`jaxlens` itself needs `BUILTIN_MODEL`); the
others are imported by name (`corpus` pulls in `jaxlens.personality`).
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
