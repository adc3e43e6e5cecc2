"""Perfect TicTacToe: a table of the optimal moves on every board, and the policy that plays it.

`minimax_table()` is built once on the host by negamax over all 3**9 boards (faster wins and
slower losses preferred); `Minimax()` looks the board up in JAX and breaks ties at random.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Int

from rl.envs.core import sample_mask
from rl.envs.tictactoe.rules import LINES, State


@functools.lru_cache(maxsize=1)
def minimax_table() -> np.ndarray:
    """bool [3**9, 9]: the optimal moves of the player to move on every board.

    A board's index is sum((cell + 1) * 3**c) over cells c, with cell -1 empty, 0 O, 1 X.
    """
    best = np.zeros((3**9, 9), bool)
    powers = 3 ** np.arange(9)

    @functools.cache
    def value(board: tuple[int, ...], player: int) -> int:
        """Score for `player` to move: (1 + empty cells) for a win, negated for a loss."""
        empty = [c for c in range(9) if board[c] == -1]
        if not empty:
            return 0
        scores = []
        for c in empty:
            nxt = board[:c] + (player,) + board[c + 1 :]
            if any(all(nxt[i] == player for i in line) for line in LINES):
                scores.append(len(empty))  # win now; len(empty) = 1 + cells left after it
            else:
                scores.append(-value(nxt, 1 - player))
        top = max(scores)
        idx = int(np.dot(np.array(board) + 1, powers))
        best[idx, [c for c, s in zip(empty, scores, strict=True) if s == top]] = True
        return top

    value((-1,) * 9, 0)
    return best


def board_index(board: list[int]) -> int:
    """The row of `minimax_table` for a board given as 9 cells (-1 empty, 0 O, 1 X)."""
    return int(np.dot(np.array(board) + 1, 3 ** np.arange(9)))


@dataclasses.dataclass(frozen=True)
class Minimax:
    """Perfect TicTacToe play (random among the optimal moves)."""

    def __call__(self, key: jax.Array, state: State) -> Int[Array, ""]:
        powers = jnp.asarray(3 ** np.arange(9), jnp.int32)
        idx = jnp.sum((state.board.astype(jnp.int32) + 1) * powers)
        moves = jnp.asarray(minimax_table())[idx] & state.legal_action_mask
        return sample_mask(key, jnp.where(jnp.any(moves), moves, state.legal_action_mask))
