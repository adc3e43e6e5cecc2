"""SPIRAL's observation text, read from TextArena itself: one TextArena env per game, in step.

SPIRAL shows the model TextArena's observation of each game: TicTacToe through TextArena's
first-and-last-message wrapper (the rules, then the latest board), Kuhn Poker and Simple
Negotiation through its full-history wrapper (every message so far, the players' own words
included, so in Negotiation the opponent's messages). Rather than restate TextArena's wording
here, a `Mirrors` batch keeps one TextArena env per game slot beside our JAX env and asks it
for the acting player's observation:

    mirrors = Mirrors(env, n)                  # env from rl.envs.make; n slots
    mirrors.start(i, row)                      # a fresh game at `row` (rl.envs.prompt.Row)
    text = mirrors.observe(i, player)          # TextArena's observation of `player` now
    mirrors.advance(i, "[4]", row_after)       # the move as said, then our state after it

Our state stays the authority: each game's `rl.envs.Mirror` builds the TextArena env at our
start (Kuhn Poker deals our cards; Negotiation starts from SPIRAL's Wood / Gold holdings) and
aligns it after every move where TextArena 0.7.4's rules differ from SPIRAL's (a denied
Negotiation offer, which 0.7.4 keeps pending). TextArena is optional: asking for a mirror
without it raises `TextArenaMissing`, which says how to install the version this is built on.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Sequence
from typing import Any

from rl.envs import core, registry
from rl.envs.prompt import Row

PIN = "textarena==0.7.4"


class TextArenaMissing(ImportError):
    """TextArena is needed (the "spiral" prompt style) but not installed."""


class MirrorError(core.EnvError):
    """A game or an env option that TextArena cannot word."""


@functools.cache
def textarena() -> Any:
    """The `textarena` module, or `TextArenaMissing` naming the install command."""
    try:
        import textarena as ta
    except ImportError:
        raise TextArenaMissing(
            "the 'spiral' prompt style words each observation as SPIRAL's TextArena envs do "
            f"and needs TextArena: pip install {PIN} (or use prompt_style='builtin')"
        ) from None
    return ta


def wrap(env: Any, history: bool) -> Any:
    """`env` in SPIRAL's observation wrapper: the full history, or the first and last message."""
    from textarena.wrappers.ObservationWrappers import llm_observation_wrapper as wrappers

    kind = wrappers.LLMObservationWrapper if history else wrappers.FirstLastObservationWrapper
    return kind(env)


def spec(env: Any) -> registry.Mirror:
    """The registered `Mirror` of `env`'s game; `MirrorError` when it has none or cannot word
    the env's options."""
    game = registry.game_of(env)
    if game.mirror is None:
        raise MirrorError(f"game {game.name!r} has no TextArena wording (Game.mirror is None)")
    if game.mirror.check is not None:
        game.mirror.check(env)
    return game.mirror


def observe(wrapped: Any, player: int) -> str:
    """What `player` sees now, as TextArena's `get_observation` gives the player to move (its
    new messages move into the wrapper's history), for either player."""
    state = wrapped.env.state
    new, state.observations[player] = state.observations[player], []
    return wrapped.observation(player, new)


class Mirrors:
    """One TextArena env per slot of a batch of `env` games (see the module docstring)."""

    def __init__(self, env: Any, n: int):
        self.env = env
        self.spec = spec(env)
        self.ta = textarena()
        self.games: list[Any] = [None] * n

    def start(self, i: int, row: Row) -> None:
        """Slot `i` plays `row`'s game: a fresh TextArena env, `row`'s moves so far replayed."""
        self.games[i] = self.spec.make(self.ta, self.env, row)
        for text in self.spec.moves(self.env, row):
            self.games[i].step(text)
        if self.spec.sync is not None:
            self.spec.sync(self.games[i], self.env, row)

    def observe(self, i: int, player: int) -> str:
        """TextArena's observation text of `player` in slot `i`."""
        return observe(self.games[i], player)

    def advance(self, i: int, text: str, row: Row) -> None:
        """Slot `i`'s move: `text` as said, then TextArena aligned with our state `row` after it."""
        self.games[i].step(text)
        if self.spec.sync is not None:
            self.spec.sync(self.games[i], self.env, row)

    def move_text(self, action: int) -> str:
        """One of our action ids as TextArena reads it (a fixed opponent's move)."""
        return self.spec.move_text(self.env, int(action))

    def actions(self, observation: str, legal: Sequence[str], rng: random.Random) -> list[str]:
        """SPIRAL's acceptable actions at `observation` (its legal moves unless the game says)."""
        if self.spec.actions is None:
            return list(legal)
        return self.spec.actions(observation, legal, rng)
