"""Kuhn Poker in text: the prompt's wording and the reply grammar.

The prompt states the rules of the env's variant and round count, lists the finished rounds
(rebuilt from the state's `nodes` and `cards`: the betting, a showdown's cards, who won what),
the chips so far, the current round with the player's own card only, and on the player's turn
the legal moves. The grammar (TextArena's) takes the first `[check]`, `[bet]`, `[call]` or
`[fold]` of a reply, any letter case.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any

from rl.envs.core import INVALID
from rl.envs.kuhn_poker.rules import (
    ACTION_NAMES,
    BF,
    CARD_NAMES,
    CB,
    EXTRA,
    NODE_NAMES,
    SHOWDOWN,
    TERMINAL,
    B,
)
from rl.envs.prompt import Row, outcome, turn

EXAMPLE = "[check]"
_MOVE = re.compile(r"\[(check|bet|call|fold)\]", re.IGNORECASE)
_VERBS = {"check": "checked", "bet": "bet", "call": "called", "fold": "folded"}


@functools.cache
def _rules(env: Any, player: int) -> str:
    chips = (
        "A bet or a call puts 1 more chip into the pot."
        if env.variant == "standard"
        else "Bets and calls add no chips: the pot is always 2, so a round is worth 1 chip."
    )
    winner = (
        "The winner of the last round wins the game."
        if env.variant == "spiral_v1"
        else "After the last round the player with more chips wins; equal chips is a draw."
    )
    return (
        f"Game: Kuhn Poker. You are Player {player}.\n"
        f"Rules: {env.rounds} rounds. Each round uses a fresh shuffled deck of three cards, "
        "J < Q < K; each player is dealt one card and antes 1 chip, so the pot starts at 2. "
        "Player 1 opens round 1 and the opener alternates every round. The opener may [check] "
        "or [bet]. After a check the other player may [check] (showdown) or [bet]. After a bet "
        "the other player may [call] (showdown) or [fold] (the bettor takes the pot). At a "
        f"showdown the higher card takes the pot. {chips} {winner} A move that is not legal "
        "at that point loses the game.\n"
    )


def _betting(env: Any, state: Row, r: int) -> str:
    node, first = state.nodes[r], 1 - r % 2
    acts = NODE_NAMES[node].split()
    said = [f"Player {(first + i) % 2} {_VERBS[a]}" for i, a in enumerate(acts)]
    text = ", ".join(said) if said else "no moves yet"
    if not TERMINAL[node]:
        return text
    cards = state.cards[r]
    if SHOWDOWN[node]:
        winner = 0 if cards[0] > cards[1] else 1
        text += f"; showdown: Player 0 had {CARD_NAMES[cards[0]]}, "
        text += f"Player 1 had {CARD_NAMES[cards[1]]}"
    else:
        winner = first if node == BF else 1 - first
    amount = 1 + int(EXTRA[node]) if env.variant == "standard" else 1
    return text + f"; Player {winner} won {amount} chip{'s' if amount > 1 else ''}"


def describe(env: Any, state: Row, player: int, messages: Sequence[str] | None = None) -> str:
    """The prompt of `player` (the betting is rebuilt from the state; `messages` not shown)."""
    done_rounds = min(state.round, env.rounds)
    lines = [_rules(env, player)]
    if done_rounds:
        lines.append("Finished rounds:")
        for r in range(done_rounds):
            held = CARD_NAMES[state.cards[r][player]]
            lines.append(f"  Round {r + 1} (you held {held}): {_betting(env, state, r)}.")
    mine, theirs = state.chips[player], state.chips[1 - player]
    lines.append(f"Chips so far: you {mine:+d}, opponent {theirs:+d}.")
    if state.terminated:
        return "\n".join(lines + [outcome(state, player)])
    r = done_rounds
    raised = env.variant == "standard" and state.nodes[r] in (B, CB)
    legal = [ACTION_NAMES[a] for a, ok in enumerate(state.legal_action_mask) if ok]
    lines += [
        f"Round {r + 1} of {env.rounds} (Player {1 - r % 2} opens). "
        f"Your card: {CARD_NAMES[state.cards[r][player]]}. Pot: {3 if raised else 2} chips.",
        f"Betting so far: {_betting(env, state, r)}.",
        turn(state, player, legal),
    ]
    return "\n".join(lines)


def read(text: str) -> tuple[int, str]:
    """The first of [check] / [bet] / [call] / [fold] in `text`, any case."""
    match = _MOVE.search(text)
    if match is None:
        return INVALID, "no [check], [bet], [call] or [fold] found"
    return ACTION_NAMES.index(f"[{match.group(1).lower()}]"), ""
