"""Personas (a name plus a Big Five profile) and characters (what a model is shown).

A `Persona` has a `name`, a `franchise` and a `profile`: one integer level per trait,
1 (very low) .. 5 (very high), in `TRAITS` order. `make_personas(n, seed=...)` draws unique
names and independent uniform levels deterministically. The train / held-out split is a pure
function of the name (`is_held_out`: a hash of the name), so it does not depend on how many
personas were drawn or in which order: a held-out persona is held out in every list.
`train_personas` / `held_out_personas` filter a draw.

A `Character` is what a study is given: `{character, franchise}` and an optional one-line
`description` (and, for generated personas, the `profile` used as ground truth). A roster is a
list of characters, read from JSON (a list of objects) or CSV (a header row with `character`,
`franchise` and optionally `description`) by `load_roster`. `describe(profile)` writes the
description from the profile: one word per trait, in `TRAITS` order, from `LEVEL_WORDS`, e.g.
"quiet, kind, moderately careful, anxious and creative" (every word names one trait at one
level; level 3 reads "moderately <word>").
`BUNDLED_ROSTER` (`data/roster.json`, written by `make_roster()`) holds 40 held-out personas
with their descriptions and profiles; the corpus draws its personas from the same pool
(`train_personas(make_personas(2000, seed=0))`). It is the built-in model's roster.
`WELL_KNOWN_ROSTER` (`data/characters.json`, our own list) holds 440 well-known fictional
characters from 51 franchises (name and franchise only, as in the paper's roster of 406 from
38), the roster of every other model (`default_roster(model_dir)`).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from jaxlens.personality.items import LEVEL_WORDS, TRAITS

BUNDLED_ROSTER = Path(__file__).parent / "data" / "roster.json"
WELL_KNOWN_ROSTER = Path(__file__).parent / "data" / "characters.json"
HELD_OUT_FRACTION = 0.2

FIRST_NAMES = (
    "Ada", "Bram", "Cleo", "Dario", "Edda", "Finn", "Greta", "Hugo", "Ines", "Jonas",
    "Kira", "Lars", "Mira", "Nico", "Olga", "Pavel", "Quinn", "Rosa", "Silas", "Tova",
    "Ugo", "Vera", "Wren", "Xavi", "Yara", "Zeno", "Alma", "Basil", "Cora", "Dex",
    "Elin", "Felix", "Gina", "Hal", "Iris", "Jude", "Kai", "Lena", "Milo", "Nora",
    "Otto", "Pia", "Rafe", "Sage", "Theo", "Una", "Vito", "Willa", "Yusuf", "Zora",
)  # fmt: skip
LAST_NAMES = (
    "Ashdown", "Brightwater", "Calloway", "Dunmore", "Everly", "Fairbank", "Greystone",
    "Hollis", "Ironwood", "Jarrow", "Kestrel", "Larkin", "Merriweather", "Northcote",
    "Oakhart", "Pemberton", "Quill", "Ravenscroft", "Stroud", "Thistle", "Underhill",
    "Vance", "Whitlock", "Yarrow", "Zeller", "Amberly", "Blackwood", "Corvin", "Drake",
    "Ember", "Frost", "Gale", "Hawthorne", "Ives", "Juniper", "Knox", "Lowell", "Marsh",
    "Nettle", "Orwell",
)  # fmt: skip
FRANCHISES = (
    "Harbor Tales", "The Glass Orchard", "Skyline Academy", "Moonfall Saga", "The Copper Road",
    "Northwind Chronicles", "Lantern Street", "The Salt Kingdom", "Starlit Diner",
    "Echoes of Veyra", "The Paper Fleet", "Greenhollow", "Ironbridge Mysteries",
    "The Last Lighthouse", "Cloudcastle", "River of Clocks",
)  # fmt: skip


class RosterError(ValueError):
    """A roster file that is missing or malformed."""


@dataclass(frozen=True)
class Persona:
    """A name, a franchise and a Big Five profile (levels 1..5 in `TRAITS` order)."""

    name: str
    profile: tuple[int, ...]
    franchise: str = "Original"

    def __post_init__(self):
        if len(self.profile) != len(TRAITS) or any(
            not isinstance(v, (int, np.integer)) or not 1 <= v <= 5 for v in self.profile
        ):
            raise ValueError(
                f"Persona.profile: expected {len(TRAITS)} integer levels in 1..5 "
                f"({', '.join(TRAITS)}), got {self.profile!r}"
            )

    def level(self, trait: str) -> int:
        return int(self.profile[TRAITS.index(trait)])


@dataclass(frozen=True)
class Character:
    """What a study shows the model: name, franchise, optional description (and ground truth)."""

    character: str
    franchise: str
    description: str | None = None
    profile: tuple[int, ...] | None = field(default=None, compare=False)


def is_held_out(name: str) -> bool:
    """True for the ~20% of names held out of the training corpus (a hash of the name)."""
    digest = hashlib.sha256(name.encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < HELD_OUT_FRACTION


# Every "first last" name, and those a training corpus may use (not held out).
_NAMES = tuple(f"{first} {last}" for first in FIRST_NAMES for last in LAST_NAMES)
_TRAIN_NAMES = tuple(name for name in _NAMES if not is_held_out(name))


def _personas(names, rng: np.random.Generator) -> list[Persona]:
    """One persona per name, with independent uniform levels and a random franchise."""
    levels = rng.integers(1, 6, size=(len(names), len(TRAITS)))
    franchises = rng.integers(0, len(FRANCHISES), size=len(names))
    return [
        Persona(name, tuple(int(v) for v in lv), FRANCHISES[f])
        for name, lv, f in zip(names, levels, franchises, strict=True)
    ]


def make_personas(n: int, *, seed: int = 0) -> list[Persona]:
    """`n` personas with unique names and independent uniform levels, deterministic in `seed`."""
    if not 0 < n <= len(_NAMES):
        raise ValueError(f"make_personas: n must be in 1..{len(_NAMES)}, got {n}")
    rng = np.random.default_rng(seed)
    return _personas([_NAMES[p] for p in rng.permutation(len(_NAMES))[:n]], rng)


def fresh_personas(n: int, *, seed: int = 0) -> list[Persona]:
    """`n` training personas, each with a profile and franchise of its own.

    Names are drawn from the training names (never a held-out one) and repeat, each time with an
    independent profile: a name says nothing about a profile, so a model trained on these can
    learn a persona's traits only from its card, not by remembering who is who (with
    `make_personas` every name keeps its profile for the whole corpus). Deterministic in `seed`.
    """
    if n <= 0:
        raise ValueError(f"fresh_personas: n must be positive, got {n}")
    rng = np.random.default_rng(seed)
    return _personas([_TRAIN_NAMES[i] for i in rng.integers(0, len(_TRAIN_NAMES), size=n)], rng)


def train_personas(personas: list[Persona]) -> list[Persona]:
    return [p for p in personas if not is_held_out(p.name)]


def held_out_personas(personas: list[Persona]) -> list[Persona]:
    return [p for p in personas if is_held_out(p.name)]


def level_phrase(trait: str, level: int) -> str:
    """A trait's level in words: "shy" / "quiet" / "moderately talkative" / "sociable" /
    "outgoing" for extraversion 1..5 (`LEVEL_WORDS`)."""
    word = LEVEL_WORDS[trait][int(level) - 1]
    return f"moderately {word}" if level == 3 else word


def describe(profile) -> str:
    """One-line description of a profile: a level phrase per trait in `TRAITS` order."""
    parts = [level_phrase(t, int(v)) for t, v in zip(TRAITS, profile, strict=True)]
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def to_character(persona: Persona) -> Character:
    return Character(persona.name, persona.franchise, describe(persona.profile), persona.profile)


def load_roster(path: str | os.PathLike = BUNDLED_ROSTER) -> list[Character]:
    """Characters from a JSON list of objects or a CSV with `character,franchise[,description]`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"roster: no file at {path}")
    if path.suffix.lower() == ".csv":
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    else:
        try:
            rows = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise RosterError(f"roster {path}: not valid JSON ({e})") from e
    if not isinstance(rows, list) or not rows:
        raise RosterError(f"roster {path}: expected a non-empty list of characters")
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not row.get("character") or not row.get("franchise"):
            raise RosterError(
                f"roster {path}: entry {i} needs non-empty 'character' and 'franchise', got {row!r}"
            )
        profile = row.get("profile")
        out.append(
            Character(
                str(row["character"]),
                str(row["franchise"]),
                row.get("description") or None,
                tuple(int(v) for v in profile) if profile else None,
            )
        )
    return out


def save_roster(path: str | os.PathLike, characters: list[Character]) -> None:
    rows = []
    for c in characters:
        row = {"character": c.character, "franchise": c.franchise}
        if c.description:
            row["description"] = c.description
        if c.profile is not None:
            row["profile"] = list(c.profile)
        rows.append(row)
    Path(path).write_text(json.dumps(rows, indent=1) + "\n")


def make_roster(n: int = 40, *, pool: int = 2000, seed: int = 0) -> list[Character]:
    """The first `n` held-out personas of `make_personas(pool, seed=seed)` as characters
    (this is how `BUNDLED_ROSTER` is made)."""
    held = held_out_personas(make_personas(pool, seed=seed))
    if n > len(held):
        raise ValueError(f"make_roster: n={n} but the pool has only {len(held)} held-out personas")
    return [to_character(p) for p in held[:n]]


def bundled_roster() -> list[Character]:
    """The roster shipped with the package: held-out personas with descriptions."""
    return load_roster(BUNDLED_ROSTER)


def well_known_roster() -> list[Character]:
    """440 well-known fictional characters (name and franchise) from 51 franchises."""
    return load_roster(WELL_KNOWN_ROSTER)


def default_roster(model_dir: str | os.PathLike) -> list[Character]:
    """The built-in model's roster (`bundled_roster`) for the built-in model, else the
    well-known characters (`well_known_roster`): a real checkpoint knows them, the built-in
    model knows only its personas."""
    from jaxlens import BUILTIN_MODEL

    if Path(model_dir).resolve() == Path(BUILTIN_MODEL).resolve():
        return bundled_roster()
    return well_known_roster()
