"""TicTacToe's TextArena env beside ours (`rl.envs.mirror`): SPIRAL's wording of the game.

SPIRAL plays TextArena's TicTacToe through its first-and-last-message wrapper: the rules, then
the latest board with the free cells. The rules are the same as ours, so nothing needs aligning
after a move; a board is rebuilt by placing its marks alternately, player 0's first (the
wrapper shows only the latest board, so the order of the moves does not show).
"""

from __future__ import annotations

from typing import Any

from rl.envs.prompt import Row
from rl.envs.registry import Mirror


def make(ta: Any, env: Any, row: Row) -> Any:
    """A fresh TextArena TicTacToe in SPIRAL's wrapper (an invalid move ends the game)."""
    from textarena.envs.TicTacToe.env import TicTacToeEnv

    from rl.envs.mirror import wrap

    game = TicTacToeEnv()
    game.reset(num_players=2)
    game.state.error_allowance = 0
    return wrap(game, history=False)


def moves(env: Any, row: Row) -> list[str]:
    """The marks on `row`'s board as moves, alternately player 0's and player 1's."""
    own = [[f"[{c}]" for c, v in enumerate(row.board) if v == p] for p in (0, 1)]
    order = [m for pair in zip(own[0], own[1] + [None], strict=False) for m in pair]
    return [m for m in order if m is not None]


def move_text(env: Any, action: int) -> str:
    return env.action_names[action] if 0 <= action < len(env.action_names) else f"[{action}]"


MIRROR = Mirror(make=make, moves=moves, move_text=move_text)
