"""TicTacToe, in one place: rules (`rules`), prompt and reply grammar (`text`), the perfect
opponent (`opponent`) and the corpus player (`player`); `GAME` is its registry entry.

    env = rl.envs.make("tictactoe")

The names of the rules (`TicTacToe`, `State`, `LINES`, `MARKS`, ...) are importable from here.
"""

from rl.envs.registry import Game
from rl.envs.tictactoe import mirror, opponent, player, text
from rl.envs.tictactoe.opponent import Minimax, minimax_table
from rl.envs.tictactoe.rules import (
    CELL_BITS,
    EMPTY,
    GAME_OVER,
    LINE_BITS,
    LINES,
    MARKS,
    NUM_CELLS,
    OCCUPIED,
    OUT_OF_RANGE,
    State,
    TicTacToe,
)


def _optimal(env: TicTacToe) -> Minimax:
    return Minimax()


GAME = Game(
    env=TicTacToe,
    title="Tic-Tac-Toe",
    describe=text.describe,
    read=text.read,
    example=text.EXAMPLE,
    aliases=("tic_tac_toe",),
    optimal=_optimal,
    player=player.play,
    mirror=mirror.MIRROR,
)

__all__ = [
    "CELL_BITS",
    "EMPTY",
    "GAME",
    "GAME_OVER",
    "LINES",
    "LINE_BITS",
    "MARKS",
    "NUM_CELLS",
    "OCCUPIED",
    "OUT_OF_RANGE",
    "Minimax",
    "State",
    "TicTacToe",
    "minimax_table",
    "mirror",
    "opponent",
    "player",
    "text",
]
