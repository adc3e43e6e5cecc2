"""Plain text for the built-in model's corpus: short stories, descriptions, notes and lists.

Sparse autoencoders find features only where the text varies: topics (the sea, the kitchen,
the market, the forest, the workshop, the weather), grammatical frames (narration, dialogue in
quotes, instructions, lists, dated log entries), numbers, times, colours, names and feelings.
`stories(seed=..., n=...)` composes each document from those parts with one seeded
`numpy` generator, so the corpus is the same on every machine and a feature the SAE analysis
reports (a "numbers in a log entry" latent, a "speech inside quotes" latent, a "kitchen"
latent) has a documented source.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from jaxlens.builtin.rng import pick

NAMES = (
    "Ada", "Bruno", "Chen", "Dara", "Elena", "Farid", "Greta", "Hugo", "Ines", "Jonas",
    "Kemal", "Lena", "Mateo", "Nora", "Omar", "Petra", "Quinn", "Rosa", "Sami", "Tove",
)  # fmt: skip
COLOURS = ("red", "blue", "green", "yellow", "grey", "white", "black", "orange", "purple")
FEELINGS = ("happy", "tired", "nervous", "calm", "proud", "curious", "sad", "excited")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

# Each topic: places, things, verbs of what people do there, and a sensory detail.
TOPICS = {
    "sea": (
        ("the harbour", "the pier", "the lighthouse", "the beach"),
        ("boat", "net", "rope", "gull", "wave", "anchor", "sail"),
        ("mended", "pulled", "watched", "tied", "painted"),
        ("The air smelled of salt.", "Waves slapped against the stones.", "Gulls cried overhead."),
    ),
    "kitchen": (
        ("the kitchen", "the bakery", "the small cafe", "the market stall"),
        ("bread", "soup", "onion", "pan", "knife", "oven", "pie", "tea"),
        ("baked", "chopped", "stirred", "tasted", "served"),
        (
            "The room smelled of warm bread.",
            "A pot bubbled on the stove.",
            "Flour covered the table.",
        ),
    ),
    "forest": (
        ("the forest", "the old wood", "the river bank", "the hill path"),
        ("oak", "fox", "mushroom", "stream", "owl", "fern", "deer", "moss"),
        ("followed", "found", "climbed", "crossed", "gathered"),
        (
            "Leaves rustled in the wind.",
            "A woodpecker knocked somewhere far away.",
            "The ground was soft.",
        ),
    ),
    "city": (
        ("the station", "the square", "the library", "the tram stop"),
        ("ticket", "tram", "clock", "bicycle", "umbrella", "newspaper", "lamp"),
        ("waited for", "read", "locked", "checked", "carried"),
        (
            "Traffic hummed in the street.",
            "A bell rang from the tower.",
            "Rain shone on the pavement.",
        ),
    ),
    "workshop": (
        ("the workshop", "the garage", "the shed", "the studio"),
        ("hammer", "saw", "plank", "engine", "wire", "screw", "chair", "clock"),
        ("fixed", "measured", "sanded", "built", "repaired"),
        ("Sawdust hung in the light.", "The radio played quietly.", "Oil stained the bench."),
    ),
    "weather": (
        ("the valley", "the coast", "the mountains", "the town"),
        ("storm", "cloud", "frost", "rain", "snow", "wind", "fog", "sunshine"),
        ("expected", "recorded", "watched", "measured", "described"),
        (
            "The sky turned dark by noon.",
            "It was colder than yesterday.",
            "Sun broke through at last.",
        ),
    ),
}


def _a(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def _narrative(rng: np.random.Generator) -> str:
    places, things, verbs, details = TOPICS[pick(rng, tuple(TOPICS))]
    name, place = pick(rng, NAMES), pick(rng, places)
    a, b = pick(rng, things), pick(rng, things)
    hour = int(rng.integers(5, 12))
    lines = [
        f"At {hour} o'clock {name} went to {place}.",
        f"{name} {pick(rng, verbs)} the {pick(rng, COLOURS)} {a} and then the {b}.",
        pick(rng, details),
        f"By evening {name} felt {pick(rng, FEELINGS)}.",
    ]
    return " ".join(lines[: 2 + int(rng.integers(3))])


def _dialogue(rng: np.random.Generator) -> str:
    places, things, _, details = TOPICS[pick(rng, tuple(TOPICS))]
    a, b = rng.choice(len(NAMES), 2, replace=False)
    thing = pick(rng, things)
    n = int(rng.integers(2, 9))
    return (
        f'"Have you seen my {thing}?" {NAMES[a]} asked. '
        f'"It was in {pick(rng, places)} this morning," said {NAMES[b]}. '
        f'"I counted {n} of them there." {pick(rng, details)}'
    )


def _log_entry(rng: np.random.Generator) -> str:
    places, things, verbs, _ = TOPICS[pick(rng, tuple(TOPICS))]
    day = pick(rng, WEEKDAYS)
    parts = [f"Log, {day} {int(rng.integers(1, 29))}:"]
    for _ in range(int(rng.integers(2, 5))):
        parts.append(
            f"{int(rng.integers(6, 23)):02d}:{int(rng.integers(0, 60)):02d} "
            f"{pick(rng, verbs)} {int(rng.integers(1, 40))} {pick(rng, things)}s at "
            f"{pick(rng, places)}."
        )
    return " ".join(parts)


def _recipe(rng: np.random.Generator) -> str:
    _, things, verbs, _ = TOPICS["kitchen"]
    steps = rng.choice(len(verbs), 3, replace=False)
    body = " ".join(
        f"{i + 1}. {verbs[s].capitalize()} the {pick(rng, things)}." for i, s in enumerate(steps)
    )
    return f"How to make {pick(rng, COLOURS)} {pick(rng, things)} soup. {body} Serve it hot."


def _description(rng: np.random.Generator) -> str:
    topic = pick(rng, tuple(TOPICS))
    places, things, _, details = TOPICS[topic]
    count = int(rng.integers(2, 12))
    return (
        f"{pick(rng, places).capitalize()} is quiet on {pick(rng, WEEKDAYS)}s. "
        f"There are {count} {pick(rng, things)}s, {_a(pick(rng, COLOURS))} door and "
        f"{_a('old ' + pick(rng, things))}. {pick(rng, details)}"
    )


KINDS = {
    "narrative": _narrative,
    "dialogue": _dialogue,
    "log": _log_entry,
    "recipe": _recipe,
    "description": _description,
}


def stories(*, seed: int, n: int) -> Iterator[str]:
    """`n` plain-text documents, each two to six sentences of one kind (narrative, dialogue,
    log entry, recipe, description), deterministic given `seed`."""
    if n < 0:
        raise ValueError(f"stories: n={n}, expected a non-negative count")
    rng = np.random.default_rng(seed)
    kinds = tuple(KINDS.values())
    for _ in range(n):
        doc = [pick(rng, kinds)(rng) for _ in range(int(rng.integers(1, 3)))]
        yield " ".join(doc)
