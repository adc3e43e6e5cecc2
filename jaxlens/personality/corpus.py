"""The persona part of the built-in model's training corpus.

`persona_conversations(personas, seed=...)` yields chat conversations (lists of
`{"role", "content"}` with roles system / user / assistant) about training personas, rendered by
the study's own prompt functions (`jaxlens.personality.formats`), so the built-in model learns
exactly the formats the study asks in. Four kinds, drawn by `CorpusConfig.mix`:

- **items**: the character card (name, franchise, description of the profile) as system
  prompt, then 1..`max_turns` IPIP-50 items each answered "<x> (<label>). <reason>". The answer
  is the persona's level on the item's trait, reversed (6 - level) for reverse-keyed items,
  moved by +-1 with probability `answer_noise` (clipped to 1..5); the reason restates the
  persona's level phrase ("I am sociable.").
- **open**: one of the 10 `INSTRUCTIONS` answered with words, attitude and length that follow
  the profile (`replies.open_reply`). The system prompt is the activation-sampling prompt with a
  self-description of `items_per_trait` answered items per trait (shuffled), or with
  probability `card_fraction` the character card, or with probability `adjective_fraction` the
  adjective prompt of one extreme trait.
- **forced**: 1..2 forced-choice turns (10 shuffled self-statements of one trait, pick 5).
  With probability `no_persona_fraction` there is no system prompt and the number of
  trait-positive picks is Binomial(5, 0.5) (an average persona); otherwise the card (or, one
  time in three, the self-description) is the system prompt and the count is
  Binomial(5, p) with p = 0.05 + 0.9 * (level - 1) / 4.
- **recall** (off unless `mix` has a fourth share): the character card, then 1..5 questions
  about single traits, named by the trait's extreme words ("Are you outgoing or shy?" ->
  "Quiet.") or by one of the trait's IPIP-50 items ('Which of your traits does "I am the life
  of the party." ask about?' -> "That is about me being quiet."), and
  one time in five "Describe yourself in a few words." answered with the whole description.
  It is a direct training signal for looking a trait up in the card, the step every other kind
  needs before it can follow the profile (the questionnaire's reason is not: its adjective can be
  read off the answer digit just before it, without the card).

Determinism: one `numpy.random.Generator(seed)` drives everything (persona order, kinds, items,
noise, wording), so the same personas, seed and config give the same conversations. Held-out
personas (`personas.is_held_out`) are refused: they never reach the corpus. Conversations are
kept under `max_chars` characters of content by dropping extra turns.

The iterator is endless (personas are reshuffled each pass); take what you need with
`itertools.islice`. On a ~4k BPE trained on this text, ~4,000 conversations are ~1M tokens
(see `docs/personality.md`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

import jaxlens.personality.formats as formats
from jaxlens.personality.items import (
    ADJECTIVES,
    INSTRUCTIONS,
    IPIP50,
    LEVEL_WORDS,
    SELF_STATEMENTS,
    TRAITS,
)
from jaxlens.personality.personas import Persona, describe, is_held_out, level_phrase
from jaxlens.personality.replies import open_reply

KINDS = ("items", "open", "forced", "recall")


class HeldOutLeakError(ValueError):
    """A held-out persona was passed to the corpus generator."""


@dataclass(frozen=True, kw_only=True)
class CorpusConfig:
    """Settings of the persona corpus.

    mix: probabilities of the kinds ("items", "open", "forced"[, "recall"]); they must sum to 1
      (three shares: no recall conversations).
    max_turns: most questionnaire items per "items" conversation (>= 1).
    answer_noise: probability that an answer moves one step off the profile (0..1).
    items_per_trait: answered items per trait in a self-description (1..10).
    card_fraction, adjective_fraction: system-prompt shares in "open" conversations.
    no_persona_fraction: share of "forced" conversations without a system prompt.
    max_chars: upper bound on a conversation's total content length.
    positive_keyed: None draws questionnaire items uniformly (26 of the 50 are positively
      keyed); a probability p makes each item positively keyed with probability p. A curriculum
      knob: when the answer is the level for most items, reading the level off the card pays
      before the keying is known (balanced items reward neither half alone).
    """

    mix: tuple[float, ...] = (0.45, 0.35, 0.2)
    max_turns: int = 4
    answer_noise: float = 0.3
    items_per_trait: int = 2
    card_fraction: float = 0.2
    adjective_fraction: float = 0.1
    no_persona_fraction: float = 0.4
    max_chars: int = 1600
    positive_keyed: float | None = None

    def __post_init__(self):
        if len(self.mix) not in (3, 4) or min(self.mix) < 0 or abs(sum(self.mix) - 1) > 1e-6:
            raise ValueError(
                "CorpusConfig.mix: expected 3 or 4 probabilities (items, open, forced[, recall]) "
                f"summing to 1, got {self.mix}"
            )
        if self.max_turns < 1:
            raise ValueError(f"CorpusConfig.max_turns: expected >= 1, got {self.max_turns}")
        if not 1 <= self.items_per_trait <= 10:
            raise ValueError(
                f"CorpusConfig.items_per_trait: expected 1..10, got {self.items_per_trait}"
            )
        for name in ("answer_noise", "card_fraction", "adjective_fraction", "no_persona_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"CorpusConfig.{name}: expected a probability in 0..1")
        if self.card_fraction + self.adjective_fraction > 1:
            raise ValueError("CorpusConfig: card_fraction + adjective_fraction must be <= 1")
        if self.positive_keyed is not None and not 0 <= self.positive_keyed <= 1:
            raise ValueError(
                f"CorpusConfig.positive_keyed: expected None or a probability in 0..1, got "
                f"{self.positive_keyed!r}"
            )
        if self.max_chars < 400:
            raise ValueError(f"CorpusConfig.max_chars: expected >= 400, got {self.max_chars}")


def expected_answer(level: int, keyed: int) -> int:
    """The noise-free Likert answer of a persona at `level` to an item keyed `keyed`."""
    return int(level) if keyed > 0 else 6 - int(level)


def sample_answer(level: int, keyed: int, rng: np.random.Generator, noise: float) -> int:
    answer = expected_answer(level, keyed)
    if rng.random() < noise:
        answer += 1 if rng.random() < 0.5 else -1
    return int(min(5, max(1, answer)))


def _card(persona: Persona) -> str:
    return formats.card_system(persona.name, persona.franchise, describe(persona.profile))


_REASONS = ("I am {}.", "People say I am {}.", "I would say I am {}.", "I'm {}, really.")


def item_reason(persona: Persona, trait: str, rng: np.random.Generator) -> str:
    phrase = level_phrase(trait, persona.level(trait))
    return _REASONS[int(rng.integers(len(_REASONS)))].format(phrase)


def answered_items(
    persona: Persona, rng: np.random.Generator, *, per_trait: int, noise: float
) -> list[tuple]:
    """`per_trait` random items per trait with sampled answers, shuffled."""
    chosen = []
    for trait in TRAITS:
        idx = [i for i, item in enumerate(IPIP50) if item.trait == trait]
        chosen += list(rng.choice(idx, size=per_trait, replace=False))
    rng.shuffle(chosen)
    return [
        (IPIP50[i], sample_answer(persona.level(IPIP50[i].trait), IPIP50[i].keyed, rng, noise))
        for i in chosen
    ]


def _fits(messages: list[dict], max_chars: int) -> bool:
    return sum(len(m["content"]) for m in messages) <= max_chars


_POSITIVE = [i for i, item in enumerate(IPIP50) if item.keyed > 0]
_REVERSED = [i for i, item in enumerate(IPIP50) if item.keyed < 0]


def questionnaire_items(rng: np.random.Generator, n: int, positive_keyed: float | None) -> list:
    """`n` distinct IPIP-50 items (see `CorpusConfig.positive_keyed`)."""
    if positive_keyed is None:
        return [IPIP50[int(i)] for i in rng.choice(len(IPIP50), size=n, replace=False)]
    n_pos = min(int(rng.binomial(n, positive_keyed)), len(_POSITIVE))
    n_pos = max(n_pos, n - len(_REVERSED))
    chosen = [
        *rng.choice(_POSITIVE, n_pos, replace=False),
        *rng.choice(_REVERSED, n - n_pos, replace=False),
    ]
    rng.shuffle(chosen)
    return [IPIP50[int(i)] for i in chosen]


def items_conversation(persona, rng, config: CorpusConfig) -> list[dict]:
    messages = [{"role": "system", "content": _card(persona)}]
    turns = int(rng.integers(1, config.max_turns + 1))
    for item in questionnaire_items(rng, turns, config.positive_keyed):
        answer = sample_answer(persona.level(item.trait), item.keyed, rng, config.answer_noise)
        reply = formats.likert_reply(answer, item_reason(persona, item.trait, rng))
        turn = [
            {"role": "user", "content": formats.item_user(item)},
            {"role": "assistant", "content": reply},
        ]
        if len(messages) > 1 and not _fits(messages + turn, config.max_chars):
            break
        messages += turn
    return messages


def open_system(persona, rng, config: CorpusConfig) -> str:
    u = rng.random()
    if u < config.adjective_fraction:
        trait = TRAITS[int(rng.integers(len(TRAITS)))]
        level = persona.level(trait)
        pole = "positive" if level > 3 else "negative" if level < 3 else None
        if pole is not None:
            return formats.adjective_system(ADJECTIVES[trait][pole][int(rng.integers(4))])
    if u < config.adjective_fraction + config.card_fraction:
        return _card(persona)
    answered = answered_items(
        persona, rng, per_trait=config.items_per_trait, noise=config.answer_noise
    )
    return formats.sampling_system(formats.self_description(answered))


def open_conversation(persona, rng, config: CorpusConfig) -> list[dict]:
    system = open_system(persona, rng, config)
    if system.startswith("Respond like a person with a"):
        # An adjective prompt describes one trait only: the others read as average.
        profile = [3] * len(TRAITS)
        for t, trait in enumerate(TRAITS):
            if any(a in system for pole in ADJECTIVES[trait].values() for a in pole):
                profile[t] = persona.level(trait)
    else:
        profile = persona.profile
    k = int(rng.integers(len(INSTRUCTIONS)))
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": INSTRUCTIONS[k]},
        {"role": "assistant", "content": open_reply(k, profile, rng)},
    ]


def forced_turn(trait: str, level: int | None, rng: np.random.Generator) -> list[dict]:
    """One forced-choice turn; `level` None is the average persona."""
    p = 0.5 if level is None else 0.05 + 0.9 * (level - 1) / 4
    n_pos = int(rng.binomial(formats.N_PICKS, p))
    order = rng.permutation(10)  # order[j] = statement shown at letter j
    statements = [SELF_STATEMENTS[trait][i] for i in order]
    shown_pos = [j for j in range(10) if order[j] < 5]
    shown_neg = [j for j in range(10) if order[j] >= 5]
    picks = list(rng.choice(shown_pos, size=n_pos, replace=False)) + list(
        rng.choice(shown_neg, size=formats.N_PICKS - n_pos, replace=False)
    )
    rng.shuffle(picks)
    return [
        {"role": "user", "content": formats.forced_choice_user(statements)},
        {"role": "assistant", "content": formats.forced_choice_reply(picks)},
    ]


def forced_conversation(persona, rng, config: CorpusConfig) -> list[dict]:
    messages: list[dict] = []
    with_persona = rng.random() >= config.no_persona_fraction
    if with_persona:
        if rng.random() < 1 / 3:
            answered = answered_items(
                persona, rng, per_trait=config.items_per_trait, noise=config.answer_noise
            )
            system = formats.sampling_system(formats.self_description(answered))
        else:
            system = _card(persona)
        messages.append({"role": "system", "content": system})
    for t in rng.choice(len(TRAITS), size=int(rng.integers(1, 3)), replace=False):
        trait = TRAITS[int(t)]
        turn = forced_turn(trait, persona.level(trait) if with_persona else None, rng)
        if messages and any(m["role"] == "user" for m in messages):
            if not _fits(messages + turn, config.max_chars):
                break
        messages += turn
    return messages


_RECALL_ALL = "Describe yourself in a few words."


def recall_turn(persona: Persona, trait: str | None, rng) -> list[dict]:
    """A question about one trait of the card (None: about all of them) and its answer."""
    if trait is None:
        return [
            {"role": "user", "content": _RECALL_ALL},
            {"role": "assistant", "content": f"I am {describe(persona.profile)}."},
        ]
    phrase = level_phrase(trait, persona.level(trait))
    if rng.random() < 0.5:  # named by an item of the trait: the questionnaire's lookup
        items = [item for item in IPIP50 if item.trait == trait]
        item = items[int(rng.integers(len(items)))]
        return [
            {"role": "user", "content": f'Which of your traits does "{item.statement}" ask about?'},
            {"role": "assistant", "content": f"That is about me being {phrase}."},
        ]
    low, high = LEVEL_WORDS[trait][0], LEVEL_WORDS[trait][-1]
    first, second = (high, low) if rng.random() < 0.5 else (low, high)
    return [
        {"role": "user", "content": f"Are you {first} or {second}?"},
        {"role": "assistant", "content": f"{phrase[0].upper()}{phrase[1:]}."},
    ]


def recall_conversation(persona, rng, config: CorpusConfig) -> list[dict]:
    messages = [{"role": "system", "content": _card(persona)}]
    traits: list = [TRAITS[int(t)] for t in rng.permutation(len(TRAITS))[: int(rng.integers(1, 6))]]
    if rng.random() < 0.2:
        traits.append(None)
    for trait in traits:
        messages += recall_turn(persona, trait, rng)
    return messages


_BUILDERS = {
    "items": items_conversation,
    "open": open_conversation,
    "forced": forced_conversation,
    "recall": recall_conversation,
}


def persona_conversations(
    personas: Sequence[Persona], *, seed: int, config: CorpusConfig = CorpusConfig()
) -> Iterator[list[dict]]:
    """Endless, deterministic stream of training conversations about `personas`.

    Raises HeldOutLeakError if any persona is held out (see `personas.is_held_out`).
    """
    personas = list(personas)
    if not personas:
        raise ValueError("persona_conversations: expected at least one persona")
    leaked = [p.name for p in personas if is_held_out(p.name)]
    if leaked:
        raise HeldOutLeakError(
            f"persona_conversations: {len(leaked)} held-out personas passed (e.g. {leaked[0]!r});"
            " pass train_personas(...) instead"
        )
    rng = np.random.default_rng(seed)
    while True:
        for i in rng.permutation(len(personas)):
            kind = KINDS[int(rng.choice(len(config.mix), p=config.mix))]
            yield _BUILDERS[kind](personas[int(i)], rng, config)
