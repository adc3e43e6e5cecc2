"""The game registry: one `Game` per game, holding everything the rest of `rl` needs to play it.

A game lives in one place (a package under `rl/envs/`) and is registered once:

    GAME = Game(env=TicTacToe, title="Tic-Tac-Toe", describe=describe, read=read, example="[4]",
                optimal=lambda env: Minimax(), player=play)
    rl.envs.register(GAME)

From then on `rl.envs.make(name, **variant)` builds it, `rl.text` renders and parses it,
`rl.opponents.fixed_policy` finds its optimal opponent, `rl.transcripts` lets its player write
corpus games, and `rl.selfplay` plays it: all by asking the registry (`get`, `game_of`), never
by testing a game's name.

What a `Game` holds (the callables' contracts):

- `env`: the rules, an `rl.envs.core.Env` subclass (a frozen dataclass whose fields are the
  game's options); its class attribute `name` is the game's name.
- `describe(env, row, player, messages) -> str`: the observing player's prompt (rules,
  position and, on its turn, the legal moves in the form `read` accepts) from one game as a
  `rl.envs.prompt.Row`; `messages` are the players' replies so far (a game that quotes them,
  like Negotiation, shows them; the others ignore them).
- `read(text) -> (action, reason)`: the game's reply grammar (TextArena's reading of a move):
  an action id (legality is `env.check`'s job) or `rl.envs.core.INVALID` and why.
- `example`: a move as a reply writes it, for the answer instruction (`"[4]"`).
- `free_form`: how SPIRAL's boxed format check treats the boxed answer. False: it must equal a
  legal move's name in `env.action_names` exactly. True (moves are free text): it goes to
  `read` unfiltered.
- `optimal(env) -> policy` (optional): the strongest fixed opponent, a single-state
  `(key, state) -> action` policy.
- `player(rng, env, row, kind) -> (action, reply)` (optional): a corpus player for
  `rl.transcripts`, `kind` one of "random", "heuristic", "strong" (noise already applied).
- `corpus_options`: the env options the corpus games use.
- `strategy` (optional): a `Strategy`, how to read a policy's strategy as a table.
- `mirror` (optional): a `Mirror`, how SPIRAL's TextArena env of the game is kept beside ours
  (`rl.envs.mirror`), which gives the game SPIRAL's observation text (the "spiral" prompt
  style, `rl.styles`).
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rl.envs import core


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class Strategy:
    """How to read a policy's strategy in a game as a table, and what a table is worth.

    Attributes:
      rows / columns: labels of the table's rows (decision points) and columns (what the player
        privately knows there, e.g. its card).
      positions: `env -> [rows][columns]` states at which the policy is asked for a move.
      counted: the actions a cell counts: a cell is the fraction of a position's legal replies
        that are one of them.
      fallback: a cell's value when no reply was legal.
      worth: `table -> {figure: float}`: what playing the table is worth, exactly.
      references: `{name: table}`: known players shown beside the policy.
      description: the report's paragraph; `{samples}` is replaced by the replies per cell.
    """

    rows: tuple[str, ...]
    columns: tuple[str, ...]
    positions: Callable[[core.Env], list[list[Any]]]
    counted: tuple[int, ...]
    fallback: float
    worth: Callable[[Any], dict[str, float]]
    references: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    description: str = ""


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class Mirror:
    """How a game's TextArena env (SPIRAL's wording) is built and stepped beside ours.

    The callables get the `textarena` module as `ta` where they need it, so a game's package
    imports nothing optional (`rl.envs.mirror` imports TextArena, or says how to install it).

    Attributes:
      make: `(ta, env, row) -> wrapped` a fresh TextArena env, reset to the start of `row`'s
        game (Kuhn Poker: our deal of every round; Negotiation: SPIRAL's Wood / Gold start) and
        wrapped in the observation wrapper SPIRAL uses for the game.
      moves: `(env, row) -> [text]` the moves made so far in `row`'s game as TextArena reads
        them (rebuilding a mirror from a state).
      move_text: `(env, action) -> text` one of our action ids as TextArena reads it.
      sync: `(wrapped, env, row)` after a move, align TextArena's state with ours where its
        rules differ (None: nothing to align).
      actions: `(observation, legal, rng) -> [text]` SPIRAL's list of acceptable actions read
        from the observation text (None: the legal moves `legal`, as written in the prompt).
      check: `(env)` raises `EnvError` when TextArena cannot word the env's options.
      options: env options of SPIRAL's version of the game, used where none are given (Kuhn
        Poker: `{"variant": "spiral_v1"}`, its default "standard" having no TextArena wording).
    """

    make: Callable[..., Any]
    moves: Callable[[core.Env, Any], list[str]]
    move_text: Callable[[core.Env, int], str]
    sync: Callable[..., None] | None = None
    actions: Callable[..., list[str]] | None = None
    check: Callable[[core.Env], None] | None = None
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class Game:
    """Everything about one game (see the module docstring for each callable's contract)."""

    env: type[core.Env]
    title: str
    describe: Callable[..., str]
    read: Callable[[str], tuple[int, str]]
    example: str
    free_form: bool = False
    aliases: tuple[str, ...] = ()
    optimal: Callable[[core.Env], Any] | None = None
    player: Callable[..., tuple[int, str]] | None = None
    corpus_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    strategy: Strategy | None = None
    mirror: Mirror | None = None

    @property
    def name(self) -> str:
        """The game's name (`env.name`): the key of `GAMES` and of `rl.envs.make`."""
        return self.env.name

    def make(self, **variant: Any) -> core.Env:
        """The env, configured by keyword options; unknown options raise `EnvError`."""
        allowed = sorted(f.name for f in dataclasses.fields(self.env))
        unknown = sorted(set(variant) - set(allowed))
        if unknown:
            raise core.EnvError(
                f"env {self.name!r} has no option(s) {unknown}; its options are {allowed}"
            )
        return self.env(**variant)


_games: dict[str, Game] = {}
_aliases: dict[str, str] = {}
GAMES: Mapping[str, Game] = types.MappingProxyType(_games)  # name -> Game, read-only view


def register(game: Game) -> Game:
    """Add `game` to the registry (once: a name or alias already taken raises `EnvError`)."""
    if not isinstance(game, Game):
        raise core.EnvError(f"register: expected an rl.envs.Game, got {game!r}")
    if not (isinstance(game.env, type) and issubclass(game.env, core.Env)) or not game.name:
        raise core.EnvError(f"register: Game.env must be a named rl.envs.Env class; got {game.env}")
    taken = [n for n in (game.name, *game.aliases) if n in _games or n in _aliases]
    if taken:
        raise core.EnvError(f"register: name(s) {taken} already registered")
    _games[game.name] = game
    _aliases.update({alias: game.name for alias in game.aliases})
    return game


def unregister(name: str) -> Game:
    """Remove the game called `name` (and its aliases) from the registry; returns it."""
    game = get(name)
    del _games[game.name]
    for alias in game.aliases:
        _aliases.pop(alias, None)
    return game


def get(name: str) -> Game:
    """The registered game called `name` (or one of its aliases)."""
    key = _aliases.get(name, name) if isinstance(name, str) else name
    if key not in _games:
        raise core.EnvError(f"unknown env {name!r}; expected one of {sorted(_games)}")
    return _games[key]


def game_of(env: Any) -> Game:
    """The registered game `env` is an instance of."""
    game = _games.get(getattr(env, "name", None))
    if game is None or not isinstance(env, game.env):
        raise core.EnvError(f"not an rl.envs env: {env!r}; expected one made by rl.envs.make")
    return game


def make(name: str, **variant: Any) -> core.Env:
    """The env called `name`, configured by keyword options (e.g. `variant="spiral_v1"`).

    Raises:
      EnvError: unknown name, or an option the game does not have, or a bad option value.
    """
    return get(name).make(**variant)


def check_names(names: Sequence[str], what: str) -> tuple[str, ...]:
    """`names` as a tuple of registered game names; raises `EnvError` naming `what` otherwise."""
    names = (names,) if isinstance(names, str) else tuple(names)
    bad = [n for n in names if n not in _games]
    if not names or bad:
        raise core.EnvError(f"{what}={names!r}: expected a non-empty subset of {sorted(_games)}")
    return names


def parse_options(specs: Sequence[str]) -> dict[str, dict[str, Any]]:
    """`["kuhn_poker.variant=spiral_v1", "kuhn_poker.rounds=3"]` (a command line's
    `GAME.OPTION=VALUE` flags) as `{game: {option: value}}`; digits become ints."""
    out: dict[str, dict[str, Any]] = {}
    for spec in specs:
        name, _, value = spec.partition("=")
        game, _, option = name.partition(".")
        if not (game and option and value):
            raise core.EnvError(f"env option {spec!r}: expected GAME.OPTION=VALUE")
        out.setdefault(get(game).name, {})[option] = int(value) if value.isdigit() else value
    return out
