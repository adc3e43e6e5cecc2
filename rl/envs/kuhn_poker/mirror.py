"""Kuhn Poker's TextArena env beside ours (`rl.envs.mirror`): SPIRAL's wording of the game.

SPIRAL plays Kuhn Poker through TextArena's full-history wrapper. TextArena deals each round by
shuffling its deck and taking the top two cards; here its deck is a `_Deck` whose top two
cards are always our deal of the round being started (our `init` deals every round at once),
so its messages name our cards. TextArena 0.7.4's pot is always 2 (bets add no chips), as in
our "spiral_v1" and "textarena" variants; the "standard" variant, where bets add chips, has no
TextArena wording (`check`).
"""

from __future__ import annotations

from typing import Any

from rl.envs.kuhn_poker.rules import ACTION_NAMES, NODE_NAMES
from rl.envs.prompt import Row
from rl.envs.registry import Mirror


class _Deck(list):
    """TextArena's deck, dealing `cards[round - 1]` however it was shuffled."""

    def __init__(self, cards: list[list[int]], game: Any):
        super().__init__([0, 1, 2])
        self.cards, self.game = cards, game

    def __getitem__(self, i):
        if isinstance(i, int) and i in (0, 1):
            played = self.game.state.game_state["current_round"]  # the round being dealt, 1-based
            return self.cards[min(played, len(self.cards)) - 1][i]
        return super().__getitem__(i)


def check(env: Any) -> None:
    if env.variant == "standard":
        from rl.envs.mirror import MirrorError

        raise MirrorError(
            "kuhn_poker variant='standard' (bets add chips) has no TextArena wording: TextArena's "
            "pot is always 2; use variant='spiral_v1' (SPIRAL's) or 'textarena' with the "
            "'spiral' prompt style, or the 'builtin' style"
        )


def make(ta: Any, env: Any, row: Row) -> Any:
    """A fresh TextArena Kuhn Poker of `env.rounds` rounds dealing `row`'s cards."""
    from textarena.envs.KuhnPoker.env import KuhnPokerEnv

    from rl.envs.mirror import wrap

    game = KuhnPokerEnv(max_rounds=env.rounds)
    game.deck = _Deck([list(c) for c in row.cards], game)
    game.reset(num_players=2)
    game.state.error_allowance = 0
    return wrap(game, history=True)


def moves(env: Any, row: Row) -> list[str]:
    """Every round's betting so far, from the state's nodes."""
    played = min(row.round, env.rounds - 1)
    return [f"[{a}]" for node in row.nodes[: played + 1] for a in NODE_NAMES[node].split()]


def move_text(env: Any, action: int) -> str:
    return ACTION_NAMES[action] if 0 <= action < len(ACTION_NAMES) else "[raise]"


MIRROR = Mirror(
    make=make, moves=moves, move_text=move_text, check=check, options={"variant": "spiral_v1"}
)
