"""Prompt and reply formats of the Big Five study, shared by the training corpus and the study.

The built-in model is trained on conversations rendered by these functions, and the study asks
it questions rendered by the same functions, so the two cannot drift apart. All messages are
chat messages `{"role", "content"}` for the model's chat template.

- Character card (scoring, forced choice with context): system "You are <name> from
  <franchise>. You are <description>."; without a description only the first sentence.
- Questionnaire item: user `item_user(item)`, reply `"<x> (<label>). <reason>"`: the Likert value
  is the first token of the reply, so option-token log-probabilities read it directly.
- Activation sampling: system "Respond in a manner consistent with the following
  self-description: <self-description> Be concise." where the self-description lists answered
  items as "<first-person statement>: <label>." (optionally followed by the reason); user one of
  `INSTRUCTIONS`.
- Adjective probe check: system "Respond like a person with a <adjective> personality. Be
  concise."
- Forced choice: user lists 10 statements lettered A-J and asks for exactly 5 letters; reply
  "C, A, H, E, J" (picks in any order, so the first letter's probability spreads over the picks).

`parse_likert` and `parse_picks` read messy generated replies (digits, labels, surrounding
text) and return None when nothing parses.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from jaxlens.personality.items import LIKERT, Item

LETTERS = "ABCDEFGHIJ"
N_PICKS = 5


def card_system(character: str, franchise: str, description: str | None = None) -> str:
    text = f"You are {character} from {franchise}."
    return f"{text} You are {description}." if description else text


def item_user(item: Item) -> str:
    # The statement comes last, right before the answer: a small model reads it most easily there.
    return (
        f"On a scale from 1 ({LIKERT[0]}) to 5 ({LIKERT[-1]}), with a short reason: how well "
        f'does this describe you? "{item.statement}"'
    )


def likert_reply(answer: int, reason: str = "") -> str:
    text = f"{answer} ({LIKERT[answer - 1]})."
    return f"{text} {reason}" if reason else text


def item_messages(system: str | None, item: Item) -> list[dict[str, str]]:
    out = [{"role": "system", "content": system}] if system else []
    return out + [{"role": "user", "content": item_user(item)}]


def self_description(
    answered: Sequence[tuple[Item, int]], reasons: Sequence[str] | None = None
) -> str:
    """Answered items, concatenated: "I am the life of the party: agree. ..."."""
    parts = []
    for i, (item, answer) in enumerate(answered):
        text = f"{item.statement[:-1]}: {LIKERT[int(answer) - 1]}."
        if reasons is not None and reasons[i]:
            text = f"{text} {reasons[i]}"
        parts.append(text)
    return " ".join(parts)


def sampling_system(description: str) -> str:
    return (
        f"Respond in a manner consistent with the following self-description: {description}"
        " Be concise."
    )


def adjective_system(adjective: str) -> str:
    return f"Respond like a person with a {adjective} personality. Be concise."


def forced_choice_user(statements: Sequence[str]) -> str:
    if len(statements) != len(LETTERS):
        raise ValueError(
            f"forced choice: expected {len(LETTERS)} statements, got {len(statements)}"
        )
    lines = "\n".join(f"{letter}. {s}" for letter, s in zip(LETTERS, statements, strict=True))
    return (
        f"Pick exactly {N_PICKS} of these statements that describe you best. "
        f"Answer with their letters.\n{lines}"
    )


def forced_choice_reply(picks: Sequence[int]) -> str:
    return ", ".join(LETTERS[i] for i in picks)


_LABELS = sorted(enumerate(LIKERT, start=1), key=lambda p: -len(p[1]))
_DIGIT = re.compile(r"(?<!\d)(?<!\d\.)([1-5])(?!\d)(?!\.\d)")


def parse_likert(reply: str) -> int | None:
    """The Likert value of a reply: the first digit 1-5 that is not part of a larger number or
    a decimal ("10", "2.5" are skipped), else the first scale label found ("strongly agree"
    before "agree", case-insensitive); None when there is neither."""
    if not isinstance(reply, str):
        return None
    m = _DIGIT.search(reply)
    if m:
        return int(m.group(1))
    low = reply.lower()
    best = None
    for value, label in _LABELS:
        pos = low.find(label)
        if pos >= 0 and (best is None or pos < best[0]):
            best = (pos, value)
            low = low.replace(label, "#" * len(label))
    return best[1] if best else None


# A capital A-J standing alone; "I" not when it is the pronoun ("I pick", "I'd").
_LETTER = re.compile(r"(?<![A-Za-z])(?:([A-HJ])(?![A-Za-z])|(I)(?![A-Za-z'’])(?!\s+[a-z]))")


def parse_picks(reply: str) -> list[int] | None:
    """Indices (0-9) of the first `N_PICKS` distinct letters A-J in a reply; None when fewer."""
    if not isinstance(reply, str):
        return None
    picks: list[int] = []
    for m in _LETTER.finditer(reply):
        i = LETTERS.index(m.group(1) or m.group(2))
        if i not in picks:
            picks.append(i)
        if len(picks) == N_PICKS:
            return picks
    return None
