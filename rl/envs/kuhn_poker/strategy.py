"""Reading a Kuhn Poker policy as a strategy table, and what a table is worth.

`STRATEGY` (an `rl.envs.Strategy`) tells `rl.selfplay.evaluate.read_strategy` where to ask a
policy for moves: the first round of a fresh game at each betting node (START, C, B, CB: the
table's rows), holding each card (J, Q, K: its columns); a cell is the fraction of the legal
replies that bet (START, C) or call (B, CB). `worth(table)` says what playing that table every
round is worth, exactly (`rl.envs.kuhn_poker.exact`), against the random and the Nash player.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rl.envs.kuhn_poker import exact
from rl.envs.kuhn_poker.opponent import KuhnNash
from rl.envs.kuhn_poker.rules import BET, CALL, CB, CHECK, START, B, C, opener
from rl.envs.registry import Strategy

# The moves that lead from a round's start to each betting node (the table's rows, in order).
PATHS = {START: (), C: (CHECK,), B: (BET,), CB: (CHECK, BET)}


def node_states(env: Any, node: int) -> list[Any]:
    """States at betting `node` of round 1, one per card (J, Q, K) of the player to act."""
    first = int(opener(jnp.int32(0)))
    actor = first if node in (START, CB) else 1 - first
    states = []
    for card in range(3):
        deal = [card, (card + 1) % 3][:: 1 if actor == 0 else -1]
        state = env.init(jax.random.key(0))
        state = state.replace(cards=state.cards.at[0].set(jnp.asarray(deal, state.cards.dtype)))
        for action in PATHS[node]:
            state = env.step(state, action)
        states.append(state)
    return states


def positions(env: Any) -> list[list[Any]]:
    """`[4 nodes][3 cards]` states of a fresh game's first round (see the module docstring)."""
    return [node_states(env, node) for node in PATHS]


def worth(table: np.ndarray, rounds: int = 5) -> dict[str, float]:
    """What a strategy table is worth, exactly (standard chips, both seats averaged):
    `exploitability` (chips per round a best response wins against it), `chips_vs_random` and
    `chips_vs_nash` (its chips per round against those players), and `win_vs_random` /
    `win_vs_nash` (the probability of winning a `rounds`-round game, every round played with
    the table)."""
    random = exact.kuhn_random_table()
    nash = KuhnNash().aggressive()

    def win(other: np.ndarray) -> float:
        seats = (exact.kuhn_match_outcome(table, other, seat=s, rounds=rounds) for s in (0, 1))
        return float(np.mean([w for w, _, _ in seats]))

    return {
        "exploitability": exact.kuhn_exploitability(table),
        "chips_vs_random": exact.kuhn_chips_per_round(table, random),
        "chips_vs_nash": exact.kuhn_chips_per_round(table, nash),
        "win_vs_random": win(random),
        "win_vs_nash": win(nash),
    }


STRATEGY = Strategy(
    rows=("bet, opening", "bet, after a check", "call a bet", "call after check-bet"),
    columns=("J", "Q", "K"),
    positions=positions,
    counted=(BET, CALL),
    fallback=0.5,  # a cell with no legal reply stays at random play
    worth=worth,
    references={"Nash": KuhnNash().aggressive()},
    description=(
        "How often the policy bets or calls with each card in a fresh game ({samples} replies "
        "per cell), and what that table is worth, exactly, in chips per round and in 5-round "
        "games (`rl.envs.kuhn_poker.strategy.worth`)."
    ),
)
