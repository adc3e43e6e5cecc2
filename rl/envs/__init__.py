"""JAX-vectorized two-player games as SPIRAL trains on them (rules: docs/games.md).

    env = rl.envs.make("kuhn_poker", variant="spiral_v1")
    state = env.init(key)                       # one game; jax.vmap(env.init) for a batch
    state = env.step(state, rl.envs.kuhn_poker.BET)

A game lives in one package here (`tictactoe`, `kuhn_poker`, `negotiation`): its rules, its
prompt wording and reply grammar, its optimal opponent and its corpus player, gathered in one
`Game` and registered once (`register`; `GAMES` maps names to games). Everything else in `rl`
(the text layer, opponents, transcripts, self-play) asks the registry (`get`, `game_of`), so a
new game is one package and one `register` call (docs/games.md, "Adding a game").

Built-in games (`BUILTIN`): `"tictactoe"`, `"kuhn_poker"` (variants "standard", "spiral_v1",
"textarena"), `"negotiation"`. Each env is a frozen dataclass (hashable: a valid static argument
of jit) with `init`, `step`, `check`, `is_legal`, `random_action`, `num_actions`,
`num_players`, `max_moves`. See `rl.envs.core` for the state contract and the invalid-move
conventions, `rl.envs.batch` for the auto-reset batch wrapper and the jitted rollout,
`rl.envs.prompt` for the pieces every prompt shares, and `rl.envs.conformance` for the harness
every env passes.

Axis letters used here beyond the core's (docs/architecture.md): `A` actions (of a mask),
`R` Kuhn rounds, `M` negotiation moves, `P` players; `B` batch and `T` time steps as usual.
"""

from __future__ import annotations

from rl.envs import kuhn_poker, negotiation, tictactoe
from rl.envs.batch import AutoReset, Rollout, Transition, rollout
from rl.envs.core import INVALID, PENALTIES, Env, EnvError, forfeit
from rl.envs.kuhn_poker import KuhnPoker
from rl.envs.negotiation import Negotiation
from rl.envs.registry import (
    GAMES,
    Game,
    Mirror,
    Strategy,
    check_names,
    game_of,
    get,
    make,
    parse_options,
    register,
    unregister,
)
from rl.envs.tictactoe import TicTacToe

# The games shipped with rl, registered here once, in the order corpus and self-play use them.
BUILTIN: tuple[str, ...] = tuple(
    register(game).name for game in (tictactoe.GAME, kuhn_poker.GAME, negotiation.GAME)
)

__all__ = [
    "BUILTIN",
    "GAMES",
    "INVALID",
    "PENALTIES",
    "AutoReset",
    "Env",
    "EnvError",
    "Game",
    "KuhnPoker",
    "Mirror",
    "Negotiation",
    "Rollout",
    "Strategy",
    "TicTacToe",
    "Transition",
    "check_names",
    "forfeit",
    "game_of",
    "get",
    "kuhn_poker",
    "make",
    "negotiation",
    "parse_options",
    "register",
    "rollout",
    "tictactoe",
    "unregister",
]
