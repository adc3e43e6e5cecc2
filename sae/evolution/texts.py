"""Text for the analysis when none is given: the browser's bundled prompts and a small corpus.

`PROMPTS` is the feature browser's bundled prompt set (the user adds more with `--prompts FILE`,
one prompt per line). `corpus(n_sentences, seed)` writes simple templated English sentences
(people, places, objects, numbers, quotes, a little code) so that a model without a training text
of its own still shows recurring, nameable contexts; a model's own text (`--text FILE`) is
better whenever there is one.
"""

from __future__ import annotations

import numpy as np

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

_NAMES = ("Lily", "Tom", "Anna", "Ben", "Mia", "Sam", "Zoe", "Max")
_PLACES = ("the park", "the forest", "the sea", "the town", "the garden", "the school")
_THINGS = ("ball", "kite", "book", "cake", "flower", "boat", "hat", "box")
_COLOURS = ("red", "blue", "green", "yellow", "shiny", "big", "little")
_FEELINGS = ("happy", "sad", "scared", "excited", "tired", "proud")
_TEMPLATES = (
    "{n} went to {p} with a {c} {t}.",
    "{n} was {f} because the {t} was {c}.",
    'One day {n} said, "I want to find my {t} in {p}."',
    "{n} and {m} played with a {c} {t} all day.",
    "The {t} fell into {p}, and {n} felt {f}.",
    "There were {k} {t}s in {p}, and {n} counted them: {seq}.",
    "def {t}_count(x):\n    return x + {k}",
)


def corpus(n_sentences: int = 2000, *, seed: int = 0) -> str:
    """`n_sentences` templated sentences, one paragraph of about five per line."""
    rng = np.random.default_rng(seed)
    pick = lambda xs: xs[int(rng.integers(len(xs)))]  # noqa: E731
    sentences = []
    for _ in range(n_sentences):
        k = int(rng.integers(2, 9))
        sentences.append(
            pick(_TEMPLATES).format(
                n=pick(_NAMES),
                m=pick(_NAMES),
                p=pick(_PLACES),
                t=pick(_THINGS),
                c=pick(_COLOURS),
                f=pick(_FEELINGS),
                k=k,
                seq=", ".join(str(i) for i in range(1, k + 1)),
            )
        )
    lines = [" ".join(sentences[i : i + 5]) for i in range(0, len(sentences), 5)]
    return "\n".join(lines) + "\n"
