"""Fixed opponents for evaluation (docs/games.md), as single-state JAX policies.

Each opponent is a frozen dataclass (hashable, so a static argument of jit) called as
`policy(key, state) -> action`; `jax.vmap` or `rl.envs.rollout` batches it.

- `RandomLegal(env)`: uniform over the legal moves of any game (`env.random_action`).
- `fixed_policy(env, kind)`: the opponent of a kind for any registered game: "random"
  (`RandomLegal`) or "optimal" (the game's registered `Game.optimal`).

Each game's own opponents live with the game and are gathered here by name:

- TicTacToe (`rl.envs.tictactoe.opponent`): `Minimax()`, perfect play from `minimax_table()`.
- Kuhn Poker (`rl.envs.kuhn_poker.opponent` and `.exact`): `KuhnNash(alpha)`, the Nash
  equilibrium family of one-round Kuhn Poker played every round; `KuhnBestResponse()`, the best
  response to the random player; and the exact calculators over strategy tables
  (`kuhn_round_outcomes`, `kuhn_round_value`, `kuhn_match_outcome`, `kuhn_chips_per_round`,
  `kuhn_exploitability`, `kuhn_best_response`, `kuhn_random_table`).
- Simple Negotiation (`rl.envs.negotiation.opponent`): `HeuristicNegotiator()`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
from jaxtyping import Array, Int

from rl.envs import core, registry
from rl.envs.kuhn_poker import (
    KuhnBestResponse,
    KuhnNash,
    kuhn_best_response,
    kuhn_chips_per_round,
    kuhn_exploitability,
    kuhn_match_outcome,
    kuhn_random_table,
    kuhn_round_outcomes,
    kuhn_round_value,
)
from rl.envs.negotiation import HeuristicNegotiator
from rl.envs.tictactoe import Minimax, minimax_table

KINDS = ("random", "optimal")


@dataclasses.dataclass(frozen=True)
class RandomLegal:
    """Uniformly random legal moves in `env`."""

    env: core.Env

    def __call__(self, key: jax.Array, state) -> Int[Array, ""]:
        return self.env.random_action(key, state)


def fixed_policy(env: core.Env, kind: str) -> Any:
    """The single-state opponent `(key, state) -> action` of `kind` ("random" or "optimal")."""
    if kind == "random":
        return RandomLegal(env)
    if kind != "optimal":
        raise core.EnvError(f"fixed_policy kind={kind!r}: expected one of {KINDS}")
    game = registry.game_of(env)
    if game.optimal is None:
        raise core.EnvError(f"game {game.name!r} registers no optimal opponent (Game.optimal)")
    return game.optimal(env)


__all__ = [
    "KINDS",
    "HeuristicNegotiator",
    "KuhnBestResponse",
    "KuhnNash",
    "Minimax",
    "RandomLegal",
    "fixed_policy",
    "kuhn_best_response",
    "kuhn_chips_per_round",
    "kuhn_exploitability",
    "kuhn_match_outcome",
    "kuhn_random_table",
    "kuhn_round_outcomes",
    "kuhn_round_value",
    "minimax_table",
]
