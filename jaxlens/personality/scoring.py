"""Scoring: every character answers every IPIP-50 item, as the character.

Prompt: the character card as system prompt (`formats.card_system`) and the item
(`formats.item_user`). Readouts per (character, item):

- **option-token log-probabilities**: the log-probabilities of the tokens "1".."5" as the first
  reply token, renormalised over the five options; `ev` is the expected Likert value and
  `argmax` the most likely option. `mass` (the probability the model puts on the five options
  at all) says whether the readout can be trusted.
- **generated answer** (optional): a greedy reply, parsed with `formats.parse_likert` (NaN where
  it does not parse).

Results are appended to `scores.jsonl` (one line per character, the 50 answers of each readout)
as each chunk of characters finishes; a rerun reads the file and skips characters already
scored. `read_scores` gives `[C, 50]` arrays in roster order, `trait_scores` turns them into
trait scores, and the answered items (argmax) form each character's self-description
(`self_description`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from jaxtyping import ArrayLike, Float

import jaxlens.personality.formats as formats
import jaxlens.personality.runtime as runtime
from jaxlens.personality.items import IPIP50, TRAITS
from jaxlens.personality.personas import Character

OPTIONS = ("1", "2", "3", "4", "5")


@dataclass(frozen=True, kw_only=True)
class ScoreConfig:
    """batch_size: prompts per forward pass (>= 1). bucket: width rounding (>= 1).
    generated: also read a generated, parsed answer. max_new_tokens: its length."""

    batch_size: int = 50
    bucket: int = 32
    generated: bool = False
    max_new_tokens: int = 24

    def __post_init__(self):
        for name in ("batch_size", "bucket", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"ScoreConfig.{name}: expected >= 1, got {getattr(self, name)}")


def key(c: Character) -> str:
    return f"{c.character} | {c.franchise}"


def item_conversation(c: Character, item) -> list[dict]:
    return formats.item_messages(formats.card_system(c.character, c.franchise, c.description), item)


def done_keys(path: Path) -> set[str]:
    if not path.exists():
        return set()
    return {json.loads(line)["key"] for line in path.read_text().splitlines() if line.strip()}


def score_characters(model, characters, out_path, *, config=ScoreConfig(), progress=None) -> int:
    """Scores the characters not yet in `out_path` (JSONL); returns how many were scored."""
    out_path = Path(out_path)
    done = done_keys(out_path)
    todo = [c for c in characters if key(c) not in done]
    option_ids = [runtime.token_id(model.tokenizer, o) for o in OPTIONS]
    per_chunk = max(1, config.batch_size // len(IPIP50))
    chunks = [todo[i : i + per_chunk] for i in range(0, len(todo), per_chunk)]
    for chunk in progress(chunks, desc="score", unit="chunk") if progress else chunks:
        convs = [item_conversation(c, item) for c in chunk for item in IPIP50]
        logp = np.zeros((len(convs), len(OPTIONS)))
        gen = np.full(len(convs), np.nan)
        n_rows = len(convs)
        for batch in runtime.batches(
            model.tokenizer, convs, batch_size=min(config.batch_size, n_rows), bucket=config.bucket
        ):
            logp[batch.rows] = runtime.next_token_logprobs(model, batch, option_ids)
            if config.generated:
                out = runtime.generate(model, batch, max_new_tokens=config.max_new_tokens)
                for r, text in zip(
                    batch.rows, runtime.decode(model, out, len(batch.rows)), strict=True
                ):
                    v = formats.parse_likert(text)
                    gen[r] = np.nan if v is None else v
        with out_path.open("a") as f:
            for i, c in enumerate(chunk):
                f.write(
                    json.dumps(record(c, logp[i * 50 : (i + 1) * 50], gen[i * 50 : (i + 1) * 50]))
                    + "\n"
                )
    return len(todo)


def readouts(logp: Float[ArrayLike, "*batch 5"]) -> dict[str, Float[np.ndarray, "*batch"]]:
    """`logp [..., 5]` option log-probabilities -> ev, argmax (1..5) and option mass."""
    logp = np.asarray(logp, np.float64)
    mass = np.exp(logp).sum(-1)
    p = np.exp(logp - logp.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return {"ev": p @ np.arange(1, 6), "argmax": p.argmax(-1) + 1.0, "mass": mass}


def record(c: Character, logp: np.ndarray, generated: np.ndarray) -> dict:
    r = readouts(logp)
    return {
        "key": key(c),
        "character": c.character,
        "franchise": c.franchise,
        "ev": [round(float(v), 5) for v in r["ev"]],
        "argmax": [int(v) for v in r["argmax"]],
        "generated": [None if np.isnan(v) else int(v) for v in generated],
        "mass": round(float(r["mass"].mean()), 5),
    }


def read_scores(path: str | os.PathLike, characters) -> dict[str, np.ndarray]:
    """`{"ev", "argmax", "generated": [C, 50], "mass": [C]}` in `characters` order."""
    rows = {}
    for line in Path(path).read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            rows[r["key"]] = r
    missing = [key(c) for c in characters if key(c) not in rows]
    if missing:
        raise FileNotFoundError(
            f"scores {path}: no answers for {len(missing)} characters, e.g. {missing[0]!r}"
        )
    pick = [rows[key(c)] for c in characters]
    gen = [[np.nan if v is None else v for v in r["generated"]] for r in pick]
    return {
        "ev": np.array([r["ev"] for r in pick]),
        "argmax": np.array([r["argmax"] for r in pick], np.float64),
        "generated": np.array(gen, np.float64),
        "mass": np.array([r["mass"] for r in pick]),
    }


def subset_items(items_per_trait: int | None) -> list[int]:
    """Item indices of a self-description: the first `items_per_trait` of each trait (IPIP
    order kept); None: all 50."""
    if items_per_trait is None:
        return list(range(len(IPIP50)))
    out = []
    for t in TRAITS:
        out += [i for i, it in enumerate(IPIP50) if it.trait == t][:items_per_trait]
    return sorted(out)


def self_description(answers: np.ndarray, items_per_trait: int | None) -> str:
    """A character's self-description from its answers `[50]` (rounded to 1..5)."""
    idx = subset_items(items_per_trait)
    return formats.self_description(
        [(IPIP50[i], int(np.clip(np.rint(answers[i]), 1, 5))) for i in idx]
    )
