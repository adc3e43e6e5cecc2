"""The TicTacToe corpus player (`rl.transcripts`): a move and the reply that explains it.

The reply first copies the free cells with the chosen one starred ("Free cells: 0, 1*, 5."),
then says why in words without cell numbers, then boxes the move. Kinds: "random" (any free
cell), "heuristic" (win, else block, else centre, corner, side), "strong" (minimax).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxlens.builtin.rng import pick
from rl.envs.prompt import Row
from rl.envs.tictactoe.opponent import board_index, minimax_table
from rl.envs.tictactoe.rules import LINES


def line_move(board: list[int], who: int) -> int | None:
    """A free cell completing a line of `who`, or None."""
    for line in LINES.tolist():
        marks = [board[c] for c in line]
        if marks.count(who) == 2 and marks.count(-1) == 1:
            return line[marks.index(-1)]
    return None


def heuristic(board: list[int], me: int, legal: list[int]) -> int:
    """Win, else block, else the centre, a corner, a side (the first free one)."""
    for who in (me, 1 - me):
        found = line_move(board, who)
        if found is not None:
            return found
    for group in ([4], [0, 2, 6, 8], [1, 3, 5, 7]):
        free = [c for c in group if c in legal]
        if free:
            return free[0]
    return legal[0]


def reason(rng: np.random.Generator, board: list[int], me: int, cell: int, kind: str) -> str:
    """Why the starred cell was chosen, in words without cell numbers: the move's only digit
    is the starred one, so the boxed move has one place to copy it from."""
    if kind == "random":
        return pick(
            rng, ["That cell is free, so I take it.", "I will play there.", "Let me try that one."]
        )
    if line_move(board, me) == cell:
        return "That cell completes my line and wins."
    if line_move(board, 1 - me) == cell:
        return "The opponent has two in a line; I must block it."
    if cell == 4:
        return "No line is threatened. The centre is the strongest cell and it is free."
    if cell in (0, 2, 6, 8):
        return "No line is threatened, so I take a corner."
    return "No line is threatened; a side cell keeps my options open."


def play(rng: np.random.Generator, env: Any, row: Row, kind: str) -> tuple[int, str]:
    """(cell, reply) of a `kind` player to move in `row`."""
    me, board = row.current_player, row.board
    legal = [c for c, ok in enumerate(row.legal_action_mask) if ok]
    if kind == "random":
        cell = int(rng.choice(legal))
    elif kind == "heuristic":
        cell = heuristic(board, me, legal)
    else:
        best = [c for c in legal if minimax_table()[board_index(board), c]] or legal
        cell = int(rng.choice(best))
    # The chosen cell is starred while the free cells are copied out: a small model then picks
    # by marking an item of a list it copies exactly, instead of naming a digit afterwards
    # (which, sampled at temperature 1, leaked to taken cells about one reply in ten). The star
    # follows the digit so the copied tokens stay those of the plain list.
    free = ", ".join(f"{c}*" if c == cell else str(c) for c in legal)
    return cell, f"Free cells: {free}. {reason(rng, board, me, cell, kind)} \\boxed{{[{cell}]}}"
