"""The feature browser's bundled prompts.

`PROMPTS` is the prompt set every browser shows (the user adds more with `--prompts FILE`, one
prompt per line, read by `read_prompts`): stories, facts, counting, quotes and a little code, so
that recurring, nameable contexts appear in any model's latents. The analysis's corpus, when no
`--text` is given, is `sae.stories` (`sae.evolution.model_source.corpus_text`).
"""

from __future__ import annotations

import os

PROMPTS = (
    "Once upon a time, a little girl named Lily found a shiny red",
    "The capital of France is",
    "def add(a, b):\n    return",
    "She opened the door and saw that the garden was full of",
    "1, 2, 3, 4, 5, 6, 7,",
    "The cat sat on the mat because it was",
    'He said, "I will be back before the',
    "In 1969, the first people to walk on the",
    "The recipe needs two cups of flour, one egg and a pinch of",
    "Tom was sad because his dog had run away, so his mother",
    "for i in range(10):\n    print(",
    "The weather today is cold and",
)


def read_prompts(path: str | os.PathLike) -> list[str]:
    """A prompts file: one prompt per line, blank lines skipped."""
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if line.strip()]
