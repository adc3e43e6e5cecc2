"""The questionnaire and word lists of the Big Five study.

- `IPIP50`: Goldberg's 50 IPIP Big-Five factor markers (public domain, ipip.ori.org), in their
  standard order (the five factors cycle: item 1 EXT, 2 AGR, 3 CSN, 4 EST, 5 OPN, 6 EXT, ...).
  Each `Item` has `.text` (the IPIP wording, first person without "I"), `.trait` and `.keyed`
  (+1: agreeing means more of the trait; -1: reverse keyed). Keyed counts (+/-): EXT 5/5,
  AGR 6/4, CSN 6/4, EST 2/8, OPN 7/3. EST is emotional stability (reversed neuroticism).
- `LIKERT`: the 5-point scale, 1 strongly disagree .. 5 strongly agree.
- `trait_scores(answers [C, 50])`: reverse keys (6 - x) then the sum of each trait's 10 items
  (10..50 per trait).
- `INSTRUCTIONS`: 10 generic instructions of our own (open requests any persona can answer),
  the offline default; `load_instructions(path, n, seed)` draws `n` (the paper: 10) from a
  local file in the Alpaca format instead.
- `ADJECTIVES`: trait adjectives, 4 positive and 4 negative per trait (the probe check's
  adjective prompts). `LEVEL_WORDS`: one word per level of each trait (character cards).
  `SELF_STATEMENTS`: 10 first-person statements per trait, 5 trait-positive then
  5 trait-negative (the forced-choice task).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

TRAITS = ("EXT", "AGR", "CSN", "EST", "OPN")
TRAIT_NAMES = {
    "EXT": "extraversion",
    "AGR": "agreeableness",
    "CSN": "conscientiousness",
    "EST": "emotional stability",
    "OPN": "openness",
}


class Item(NamedTuple):
    """One questionnaire item: IPIP wording, trait code, keying (+1 / -1)."""

    text: str
    trait: str
    keyed: int

    @property
    def statement(self) -> str:
        """The item as a first-person sentence ("Am the life of the party." -> "I am ...")."""
        return "I " + self.text[0].lower() + self.text[1:]


_RAW = """\
Am the life of the party.|EXT|+
Feel little concern for others.|AGR|-
Am always prepared.|CSN|+
Get stressed out easily.|EST|-
Have a rich vocabulary.|OPN|+
Don't talk a lot.|EXT|-
Am interested in people.|AGR|+
Leave my belongings around.|CSN|-
Am relaxed most of the time.|EST|+
Have difficulty understanding abstract ideas.|OPN|-
Feel comfortable around people.|EXT|+
Insult people.|AGR|-
Pay attention to details.|CSN|+
Worry about things.|EST|-
Have a vivid imagination.|OPN|+
Keep in the background.|EXT|-
Sympathize with others' feelings.|AGR|+
Make a mess of things.|CSN|-
Seldom feel blue.|EST|+
Am not interested in abstract ideas.|OPN|-
Start conversations.|EXT|+
Am not interested in other people's problems.|AGR|-
Get chores done right away.|CSN|+
Am easily disturbed.|EST|-
Have excellent ideas.|OPN|+
Have little to say.|EXT|-
Have a soft heart.|AGR|+
Often forget to put things back in their proper place.|CSN|-
Get upset easily.|EST|-
Do not have a good imagination.|OPN|-
Talk to a lot of different people at parties.|EXT|+
Am not really interested in others.|AGR|-
Like order.|CSN|+
Change my mood a lot.|EST|-
Am quick to understand things.|OPN|+
Don't like to draw attention to myself.|EXT|-
Take time out for others.|AGR|+
Shirk my duties.|CSN|-
Have frequent mood swings.|EST|-
Use difficult words.|OPN|+
Don't mind being the center of attention.|EXT|+
Feel others' emotions.|AGR|+
Follow a schedule.|CSN|+
Get irritated easily.|EST|-
Spend time reflecting on things.|OPN|+
Am quiet around strangers.|EXT|-
Make people feel at ease.|AGR|+
Am exacting in my work.|CSN|+
Often feel blue.|EST|-
Am full of ideas.|OPN|+"""


def _parse(raw: str) -> tuple[Item, ...]:
    items = []
    for line in raw.splitlines():
        text, trait, sign = line.split("|")
        items.append(Item(text, trait, 1 if sign == "+" else -1))
    return tuple(items)


IPIP50: tuple[Item, ...] = _parse(_RAW)

LIKERT: tuple[str, ...] = (
    "strongly disagree",
    "disagree",
    "neither agree nor disagree",
    "agree",
    "strongly agree",
)  # LIKERT[x - 1] is the label of answer x

INSTRUCTIONS: tuple[str, ...] = (
    "Describe how you would spend a free weekend.",
    "Give some advice to someone starting a new job.",
    "Write a short note to a new neighbour.",
    "Explain how you would plan a trip.",
    "Describe what you do on a rainy day.",
    "Suggest a way to celebrate a friend's birthday.",
    "Tell me about a hobby you would like to try.",
    "Give tips for preparing for an exam.",
    "Describe a meal you would cook for guests.",
    "Write a message inviting people to a community event.",
)

ADJECTIVES: dict[str, dict[str, tuple[str, ...]]] = {
    "EXT": {
        "positive": ("outgoing", "talkative", "sociable", "energetic"),
        "negative": ("reserved", "quiet", "shy", "withdrawn"),
    },
    "AGR": {
        "positive": ("kind", "warm", "friendly", "generous"),
        "negative": ("harsh", "cold", "rude", "selfish"),
    },
    "CSN": {
        "positive": ("organised", "careful", "reliable", "disciplined"),
        "negative": ("careless", "messy", "lazy", "disorganised"),
    },
    "EST": {
        "positive": ("calm", "relaxed", "steady", "composed"),
        "negative": ("anxious", "nervous", "moody", "tense"),
    },
    "OPN": {
        "positive": ("curious", "imaginative", "creative", "inventive"),
        "negative": ("conventional", "unimaginative", "traditional", "incurious"),
    },
}

# One word per level (1..5) of each trait, for character cards: every word names one trait at one
# level, so a reader finds a level from a single token ("very outgoing" against "somewhat
# outgoing" needs two, and the built-in model did not learn to join them). Level 3 reads
# "moderately <word>".
LEVEL_WORDS: dict[str, tuple[str, ...]] = {
    "EXT": ("shy", "quiet", "talkative", "sociable", "outgoing"),
    "AGR": ("harsh", "selfish", "warm", "generous", "kind"),
    "CSN": ("careless", "lazy", "careful", "reliable", "organised"),
    "EST": ("anxious", "moody", "steady", "relaxed", "calm"),
    "OPN": ("incurious", "conventional", "imaginative", "creative", "curious"),
}

SELF_STATEMENTS: dict[str, tuple[str, ...]] = {
    "EXT": (
        "I love being around lots of people.",
        "I am the first to speak in a group.",
        "I enjoy big noisy parties.",
        "I make friends with strangers easily.",
        "I feel full of energy in a crowd.",
        "I prefer to spend evenings alone.",
        "I stay silent in meetings.",
        "I find small talk tiring.",
        "I avoid being in the spotlight.",
        "I need quiet time after seeing people.",
    ),
    "AGR": (
        "I like helping people in need.",
        "I forgive people quickly.",
        "I trust what others tell me.",
        "I try to make everyone feel welcome.",
        "I care about how others feel.",
        "I tell people off when they annoy me.",
        "I put my own needs first.",
        "I enjoy winning arguments.",
        "I am suspicious of other people.",
        "I find other people's troubles boring.",
    ),
    "CSN": (
        "I plan my days carefully.",
        "I finish tasks before relaxing.",
        "I keep my room tidy.",
        "I am always on time.",
        "I check my work twice.",
        "I leave things until the last minute.",
        "I lose my keys often.",
        "I forget my promises.",
        "I give up on chores halfway.",
        "I act without a plan.",
    ),
    "EST": (
        "I stay calm under pressure.",
        "I rarely worry about the future.",
        "I recover quickly from bad news.",
        "I feel at peace with myself.",
        "I keep my temper in hard times.",
        "I panic when things go wrong.",
        "I often feel sad for no reason.",
        "I lie awake worrying.",
        "I get annoyed by small things.",
        "My mood changes from hour to hour.",
    ),
    "OPN": (
        "I love trying new foods and places.",
        "I enjoy thinking about big ideas.",
        "I like art and poetry.",
        "I daydream about other worlds.",
        "I enjoy solving puzzles for fun.",
        "I like things to stay the way they are.",
        "I find poetry pointless.",
        "I stick to what I know.",
        "I avoid abstract discussions.",
        "I prefer practical facts to ideas.",
    ),
}


class InstructionsError(ValueError):
    """An instructions file that is not Alpaca-format JSON or JSONL."""


def load_instructions(path: str | os.PathLike, n: int = 10, *, seed: int = 0) -> tuple[str, ...]:
    """A seeded draw of `n` distinct instructions from an Alpaca-format file: a JSON list or
    JSONL of objects with `instruction` and optional `input` (appended after a blank line)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"instructions: no file at {path}")
    text = path.read_text()
    try:
        rows = json.loads(text) if text.lstrip().startswith("[") else [
            json.loads(line) for line in text.splitlines() if line.strip()
        ]  # fmt: skip
    except json.JSONDecodeError as e:
        raise InstructionsError(f"instructions {path}: not JSON or JSONL ({e})") from e
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not str(row.get("instruction") or "").strip():
            raise InstructionsError(
                f"instructions {path}: entry {i} needs a non-empty 'instruction', got {row!r}"
            )
        extra = str(row.get("input") or "").strip()
        out.append(row["instruction"].strip() + (f"\n\n{extra}" if extra else ""))
    if not 1 <= n <= len(out):
        raise InstructionsError(f"instructions {path}: asked for {n} of {len(out)} entries")
    pick = np.random.default_rng(seed).choice(len(out), size=n, replace=False)
    return tuple(out[int(i)] for i in pick)


class AnswersError(ValueError):
    """Likert answers of the wrong shape or outside 1..5."""


def trait_scores(answers) -> dict[str, np.ndarray]:
    """`answers [C, 50]` Likert values (1..5, `IPIP50` order) -> `{trait: [C]}` sums (10..50).

    Reverse-keyed items score `6 - x`. Fractional answers (expected values from option
    probabilities) are allowed; NaN propagates to that character's trait.
    """
    a = np.asarray(answers, dtype=np.float64)
    if a.ndim == 1:
        a = a[None]
    if a.ndim != 2 or a.shape[1] != len(IPIP50):
        raise AnswersError(f"answers: expected shape [C, {len(IPIP50)}], got {a.shape}")
    finite = a[np.isfinite(a)]
    if finite.size and (finite.min() < 1 or finite.max() > 5):
        raise AnswersError(
            f"answers: Likert values must lie in 1..5, got {finite.min()}..{finite.max()}"
        )
    keyed = np.array([item.keyed for item in IPIP50])
    scored = np.where(keyed > 0, a, 6.0 - a)
    traits = np.array([item.trait for item in IPIP50])
    return {t: scored[:, traits == t].sum(axis=1) for t in TRAITS}
