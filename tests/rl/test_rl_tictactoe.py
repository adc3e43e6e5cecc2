"""Scripted TicTacToe traces for every rule of docs/games.md."""

import itertools

import numpy as np
import pytest

import rl.envs as E
from rl.envs import tictactoe as T

ENV = E.make("tictactoe")


def _filler(line, count):
    """`count` cells off `line` that hold no line of their own (the loser's moves)."""
    for cells in itertools.combinations([c for c in range(9) if c not in line], count):
        if not any(set(lin) <= set(cells) for lin in T.LINES.tolist()):
            return list(cells)
    raise AssertionError("no filler")


def _winning_trace(line, winner):
    """Moves that let `winner` complete `line` on its third mark."""
    other = _filler(line, 3)
    if winner == 0:
        return [line[0], other[0], line[1], other[1], line[2]]
    return [other[2], line[0], other[0], line[1], other[1], line[2]]


@pytest.mark.parametrize("winner", [0, 1])
@pytest.mark.parametrize("line", T.LINES.tolist())
def test_every_line_wins(play, line, winner):
    states = play(ENV, _winning_trace(line, winner))
    for s in states[:-1]:
        assert not bool(s.terminated) and not np.any(np.asarray(s.rewards))
    end = states[-1]
    assert bool(end.terminated)
    expect = [1.0, -1.0] if winner == 0 else [-1.0, 1.0]
    assert np.asarray(end.rewards).tolist() == expect
    assert not np.any(np.asarray(end.legal_action_mask))
    board = np.asarray(end.board)
    assert np.all(board[line] == winner)


def test_marks_alternate_player0_first(play):
    states = play(ENV, [4, 0, 8])
    assert [int(s.current_player) for s in states] == [0, 1, 0, 1]
    assert np.asarray(states[-1].board).tolist() == [1, -1, -1, -1, 0, -1, -1, -1, 0]
    assert np.asarray(states[-1].legal_action_mask).tolist() == [
        False, True, True, True, False, True, True, True, False
    ]  # fmt: skip
    assert int(states[-1].move_count) == 3


def test_full_board_is_a_draw(play):
    # O X O / O X X / X O O : no line for either player
    moves = [0, 1, 2, 4, 3, 5, 7, 6, 8]
    states = play(ENV, moves)
    assert all(not bool(s.terminated) for s in states[:-1])
    assert bool(states[-1].terminated)
    assert np.asarray(states[-1].rewards).tolist() == [0.0, 0.0]


def test_win_on_last_cell_is_a_win_not_a_draw(play):
    # O's fifth mark, the ninth on the board, completes the 2-4-6 diagonal.
    moves = [0, 1, 2, 3, 4, 8, 7, 5, 6]
    states = play(ENV, moves)
    assert np.asarray(states[-1].rewards).tolist() == [1.0, -1.0]
    moves = [0, 1, 4, 8, 2, 6, 3, 5, 7]  # the ninth mark completes no line: draw
    assert np.asarray(play(ENV, moves)[-1].rewards).tolist() == [0.0, 0.0]


@pytest.mark.parametrize("mover", [0, 1])
def test_occupied_cell_is_an_invalid_move(play, mover):
    moves = [4] if mover == 1 else [4, 0]
    states = play(ENV, moves + [4])
    end = states[-1]
    assert bool(end.terminated)
    assert int(ENV.check(states[-2], 4)) == T.OCCUPIED
    expect = np.where(np.arange(2) == mover, -1.0, 0.0)
    assert np.asarray(end.rewards).tolist() == expect.tolist()
    assert np.asarray(end.board).tolist() == np.asarray(states[-2].board).tolist()


@pytest.mark.parametrize("cell", [-1, 9, 10, 1000, 2**31 - 1])
def test_out_of_range_cell_is_an_invalid_move(play, cell):
    start, end = play(ENV, [cell])
    assert int(ENV.check(start, cell)) == T.OUT_OF_RANGE
    assert bool(end.terminated)
    assert np.asarray(end.rewards).tolist() == [-1.0, 0.0]


def test_finished_game_is_absorbing(play):
    states = play(ENV, [0, 3, 1, 4, 2, 5, 6])
    assert np.asarray(states[5].rewards).tolist() == [1.0, -1.0]
    for later in states[6:]:
        assert np.asarray(later.rewards).tolist() == [0.0, 0.0]
        assert np.asarray(later.board).tolist() == np.asarray(states[5].board).tolist()
