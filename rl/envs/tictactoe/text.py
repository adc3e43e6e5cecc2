"""TicTacToe in text: the prompt's wording and the reply grammar.

The prompt states the rules for the observing player, draws the board (an empty cell shows its
number) and, on that player's turn, lists the free cells as `[c]`; no move history (as in
SPIRAL). The grammar (TextArena's) takes the first `[<digits>]` of a reply, spaces allowed
inside the brackets; numbers outside 0-8 come back as they are (or `HUGE` when too long) so
`check` can say "outside 0-8".
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any

from rl.envs.core import INVALID
from rl.envs.prompt import Row, outcome, turn
from rl.envs.tictactoe.rules import MARKS

EXAMPLE = "[4]"
HUGE = 10**6  # stands for any number too long to be a real move
_CELL = re.compile(r"\[\s*(\d+)\s*\]")


@functools.cache
def _rules(player: int) -> str:
    return (
        f"Game: Tic-Tac-Toe. You are Player {player} and play {MARKS[player]}; "
        f"Player {1 - player} plays {MARKS[1 - player]}.\n"
        "Rules: the players take turns placing their mark in an empty cell of a 3x3 grid, "
        "Player 0 (O) first. Three of one player's marks in a row, a column or a diagonal "
        "win the game; a full grid without such a line is a draw. Choosing a taken cell or "
        "a number outside 0-8 loses the game at once.\n"
        "The cells are numbered 0-8 row by row; an empty cell shows its number.\n\nBoard:\n"
    )


def describe(env: Any, state: Row, player: int, messages: Sequence[str] | None = None) -> str:
    """The prompt of `player` (no move history, so `messages` are not shown)."""
    cells = [MARKS[v] if v >= 0 else str(c) for c, v in enumerate(state.board)]
    board = "\n---+---+---\n".join(" " + " | ".join(cells[r : r + 3]) for r in (0, 3, 6))
    if state.terminated:
        return f"{_rules(player)}{board}\n\n{outcome(state, player)}"
    legal = [f"[{c}]" for c, ok in enumerate(state.legal_action_mask) if ok]
    return f"{_rules(player)}{board}\n\n{turn(state, player, legal)}"


def number(digits: str) -> int:
    """A run of digits as an int, or `HUGE` when it is too long to be a real move."""
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= 6 else HUGE


def read(text: str) -> tuple[int, str]:
    """The first bracketed number in `text`, e.g. 'I take [ 4 ]' -> 4."""
    match = _CELL.search(text)
    if match is None:
        return INVALID, "no move of the form [<cell number>] found"
    return number(match.group(1)), ""
