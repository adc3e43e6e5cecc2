"""The pieces every game's prompt shares (host side, plain Python).

A game's `describe` (see `rl.envs.registry`) reads one game as a `Row`: the state's fields as
Python scalars and lists, made for a whole batch at once by `rows` (one host transfer). Working
on Python values, not arrays, keeps a prompt to a few microseconds. `outcome` and `turn` are
the sentences every game ends its prompt with.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from types import SimpleNamespace as Row
from typing import Any

import jax
import numpy as np

__all__ = ["Row", "outcome", "row", "rows", "turn"]


def rows(states: Any) -> list[Row]:
    """One `Row` per game of a batch of states (leading axis B), from one host transfer."""
    host = jax.device_get(states)
    cols = {f.name: np.asarray(getattr(host, f.name)).tolist() for f in dataclasses.fields(host)}
    n = len(cols["terminated"])
    return [Row(**{k: v[i] for k, v in cols.items()}) for i in range(n)]


def row(state: Any) -> Row:
    """The `Row` of one (unbatched) state."""
    (one,) = rows(jax.tree.map(lambda x: np.asarray(x)[None], jax.device_get(state)))
    return one


def outcome(state: Row, player: int) -> str:
    """The sentence that ends a finished game's prompt, from `player`'s side."""
    mine, theirs = state.rewards[player], state.rewards[1 - player]
    if mine > 0:
        return "The game is over: you won."
    if mine < 0:
        return "The game is over: you lost" + (" by an invalid move." if theirs >= 0 else ".")
    if theirs < 0:
        return f"The game is over: Player {1 - player} lost by an invalid move."
    return "The game is over: it is a draw."


def turn(state: Row, player: int, legal: Sequence[str]) -> str:
    """Whose turn it is; on `player`'s own turn, the legal moves as the grammar reads them."""
    if state.current_player != player:
        return f"It is Player {1 - player}'s turn."
    return "It is your turn. Legal moves: " + ", ".join(legal) + "."
