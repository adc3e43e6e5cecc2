"""The Kuhn Poker corpus player (`rl.transcripts`): a move and the reply that explains it.

The reply first restates the card and the two legal moves ("I hold Q and may [call] or
[fold]."), then gives a reason, then boxes the move. Kinds: "random" (either legal move),
"heuristic" (bet or call with K, check / call with Q, check / fold with J), "strong" (the
Nash equilibrium, `KuhnNash`, alpha 1/6).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxlens.builtin.rng import pick
from rl.envs.kuhn_poker.opponent import KuhnNash
from rl.envs.kuhn_poker.rules import ACTION_NAMES, BET, CALL, CARD_NAMES, CHECK, FOLD, START, C
from rl.envs.prompt import Row

WHY = {  # (card, action) -> why a heuristic / strong player does it
    (0, CHECK): "J is the lowest card, so I check.",
    (0, BET): "J rarely wins a showdown, but a bluff now and then keeps them guessing: I bet.",
    (0, FOLD): "J loses to any card that calls a bet, so I fold.",
    (0, CALL): "J is weak, but I call to keep them honest.",
    (1, CHECK): "Q is a middle card; I check and see what happens.",
    (1, BET): "Q beats J, so I bet.",
    (1, CALL): "Q beats a bluffing J, so I call.",
    (1, FOLD): "Q loses to K, and a bet often means K, so I fold.",
    (2, CHECK): "K is the best card; I check to let them bet into me.",
    (2, BET): "K is the highest card, so I bet.",
    (2, CALL): "K cannot lose a showdown, so I call.",
    (2, FOLD): "I fold.",
}


def situation(card: int, legal: list[int]) -> str:
    """'I hold Q and may [call] or [fold].'"""
    a, b = (ACTION_NAMES[x] for x in legal)
    return f"I hold {CARD_NAMES[card]} and may {a} or {b}."


def _choose(rng: np.random.Generator, kind: str, card: int, node: int, opening: bool) -> int:
    """The move of a "heuristic" or "strong" player holding `card` at betting `node`."""
    if kind == "heuristic":
        strong = card == 2 or (card == 1 and not opening)
        return (BET if strong else CHECK) if opening else (CALL if strong else FOLD)
    aggressive = rng.random() < KuhnNash().aggressive()[min(node, 3), card]
    return (BET if aggressive else CHECK) if opening else (CALL if aggressive else FOLD)


def play(rng: np.random.Generator, env: Any, row: Row, kind: str) -> tuple[int, str]:
    """(action, reply) of a `kind` player to move in `row`."""
    r = min(row.round, env.rounds - 1)
    card, node = row.cards[r][row.current_player], row.nodes[r]
    legal = [a for a, ok in enumerate(row.legal_action_mask) if ok]
    if kind == "random":
        action = int(rng.choice(legal))
        name = ACTION_NAMES[action][1:-1]
        why = pick(rng, [f"I will {name}.", f"Let me {name} this time.", f"I {name}."])
    else:
        action = _choose(rng, kind, card, node, node in (START, C))
        why = WHY[(card, action)]
    return action, f"{situation(card, legal)} {why} \\boxed{{{ACTION_NAMES[action]}}}"
