"""TicTacToe as SPIRAL plays it (TextArena's rules; docs/games.md).

A 3x3 board, cells 0-8 row-major. Player 0 moves first and plays `O`, player 1 plays `X`; no
randomness (`init` ignores its key). An action is a cell id. Three in a row (3 rows, 3
columns, 2 diagonals) wins +1 / -1; a full board without a line is a draw. An occupied cell or
an id outside 0-8 is an invalid move: the game ends, -1 for the mover and 0 for the other
player (see `rl.envs.core` for the conventions).

The board is kept twice: `board` (int8 `[9]`, -1 empty, else the owner's id) for readers, and
`marks` (int32 `[2]`, one bit per cell per player) for the rules: a win is
`(marks & LINE) == LINE` against the 8 line masks, the legal cells are the zero bits of
`marks[0] | marks[1]`. That keeps a step to a handful of integer ops per game.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jaxtyping import Array, Bool, Float, Int

from rl.envs import core

EMPTY = -1
NUM_CELLS = 9
MARKS = ("O", "X")  # player 0 plays O, player 1 plays X
LINES = np.array(
    [[0, 1, 2], [3, 4, 5], [6, 7, 8], [0, 3, 6], [1, 4, 7], [2, 5, 8], [0, 4, 8], [2, 4, 6]],
    dtype=np.int32,
)  # [8 lines, 3 cells]
LINE_BITS = np.array([sum(1 << c for c in line) for line in LINES], dtype=np.int32)  # [8]
CELL_BITS = np.array([1 << c for c in range(NUM_CELLS)], dtype=np.int32)  # [9]

# `check` codes (index into TicTacToe.REASONS)
OUT_OF_RANGE, OCCUPIED, GAME_OVER = 1, 2, 3


@struct.dataclass
class State:
    current_player: Int[Array, ""]
    legal_action_mask: Bool[Array, " 9"]
    rewards: Float[Array, " 2"]
    terminated: Bool[Array, ""]
    move_count: Int[Array, ""]
    board: Int[Array, " 9"]  # int8: -1 empty, 0 = player 0's O, 1 = player 1's X
    marks: Int[Array, " 2"]  # int32 bitboards, bit c set when that player holds cell c


@dataclasses.dataclass(frozen=True, kw_only=True)
class TicTacToe(core.Env):
    """TicTacToe; no options (the game has no variants)."""

    name: ClassVar[str] = "tictactoe"
    num_actions: ClassVar[int] = NUM_CELLS
    max_moves: ClassVar[int] = NUM_CELLS
    action_names: ClassVar[tuple[str, ...]] = tuple(f"[{c}]" for c in range(NUM_CELLS))
    REASONS: ClassVar[tuple[str, ...]] = (
        "ok",
        "cell is outside 0-8",
        "cell is already occupied",
        "the game is over",
    )

    def init(self, key: jax.Array) -> State:
        del key  # deterministic game
        return State(
            current_player=jnp.int32(0),
            legal_action_mask=jnp.ones(NUM_CELLS, jnp.bool_),
            rewards=jnp.zeros(2, jnp.float32),
            terminated=jnp.bool_(False),
            move_count=jnp.int32(0),
            board=jnp.full(NUM_CELLS, EMPTY, jnp.int8),
            marks=jnp.zeros(2, jnp.int32),
        )

    def check(self, state: State, action: Int[Array, ""] | int) -> Int[Array, ""]:
        action = jnp.asarray(action, jnp.int32)
        in_range = (action >= 0) & (action < NUM_CELLS)
        free = state.legal_action_mask[jnp.clip(action, 0, NUM_CELLS - 1)]
        return jnp.select(
            [state.terminated, ~in_range, ~free],
            [GAME_OVER, OUT_OF_RANGE, OCCUPIED],
            core.OK,
        ).astype(jnp.int32)

    def step(self, state: State, action: Int[Array, ""] | int) -> State:
        action = jnp.asarray(action, jnp.int32)
        player = state.current_player
        live = ~state.terminated
        legal = self.check(state, action) == core.OK
        cell = jnp.clip(action, 0, NUM_CELLS - 1)
        bit = jnp.where(legal, jnp.left_shift(jnp.int32(1), cell), 0)
        mine = state.marks[player] | bit
        marks = state.marks.at[player].set(mine)
        won = legal & jnp.any((mine & LINE_BITS) == LINE_BITS)
        free = (marks[0] | marks[1]) & CELL_BITS == 0  # [9]
        full = ~jnp.any(free)
        ended = live & (~legal | won | full)
        rewards = jnp.where(
            legal,
            core.end_rewards(player, won),  # zeros unless won (a full board is a draw)
            core.penalty_rewards(player),
        )
        board = jnp.where(
            (jnp.arange(NUM_CELLS) == cell) & legal, player.astype(jnp.int8), state.board
        )
        terminated = state.terminated | ended
        return State(
            current_player=jnp.where(legal, 1 - player, player),
            legal_action_mask=free & ~terminated,
            rewards=jnp.where(live, rewards, 0.0),
            terminated=terminated,
            move_count=state.move_count + legal.astype(jnp.int32),
            board=board,
            marks=marks,
        )
