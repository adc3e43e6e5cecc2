"""Seeded draws shared by the generators of the built-in model's corpus.

The persona replies (`jaxlens.personality`), game transcripts (`rl.transcripts`) and stories
(`sae.stories`) all draw from one `np.random.Generator` in a fixed order, so the corpus is a
function of its seed. `pick` is their one way to choose among options: changing how it draws
would change every corpus, so it stays one `rng.integers` call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np

T = TypeVar("T")


def pick(rng: np.random.Generator, options: Sequence[T]) -> T:
    """One of `options`, uniformly (one `rng.integers(len(options))` draw)."""
    return options[int(rng.integers(len(options)))]
