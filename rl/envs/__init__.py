"""JAX-vectorized two-player games as SPIRAL trains on them (rules: docs/games.md).

    env = rl.envs.make("kuhn_poker", variant="spiral_v1")
    state = env.init(key)                       # one game; jax.vmap(env.init) for a batch
    state = env.step(state, rl.envs.kuhn_poker.BET)

Games: `"tictactoe"`, `"kuhn_poker"` (variants "standard", "spiral_v1", "textarena"),
`"negotiation"`. Each env is a frozen dataclass (hashable: a valid static argument of jit)
with `init`, `step`, `check`, `is_legal`, `random_action`, `num_actions`, `num_players`,
`max_moves`. See `rl.envs.core` for the state contract and the invalid-move conventions,
`rl.envs.batch` for the auto-reset batch wrapper and the jitted rollout, and
`rl.envs.conformance` for the harness every env passes.

Axis letters used here beyond the core's (docs/architecture.md): `A` actions (of a mask),
`R` Kuhn rounds, `M` negotiation moves, `P` players; `B` batch and `T` time steps as usual.
"""

from __future__ import annotations

from rl.envs import kuhn_poker, negotiation, tictactoe
from rl.envs.batch import AutoReset, Rollout, Transition, rollout
from rl.envs.core import INVALID, PENALTIES, Env, EnvError, forfeit
from rl.envs.kuhn_poker import KuhnPoker
from rl.envs.negotiation import Negotiation
from rl.envs.tictactoe import TicTacToe

REGISTRY: dict[str, type[Env]] = {
    "tictactoe": TicTacToe,
    "kuhn_poker": KuhnPoker,
    "negotiation": Negotiation,
}
ALIASES = {"tic_tac_toe": "tictactoe", "kuhn": "kuhn_poker", "simple_negotiation": "negotiation"}


def make(name: str, **variant) -> Env:
    """The env called `name`, configured by keyword options (e.g. `variant="spiral_v1"`).

    Raises:
      EnvError: unknown name, or an option the game does not have, or a bad option value.
    """
    key = ALIASES.get(name, name) if isinstance(name, str) else name
    if key not in REGISTRY:
        raise EnvError(f"unknown env {name!r}; expected one of {sorted(REGISTRY)}")
    cls = REGISTRY[key]
    allowed = sorted(cls.__dataclass_fields__)
    unknown = sorted(set(variant) - set(allowed))
    if unknown:
        raise EnvError(f"env {key!r} has no option(s) {unknown}; its options are {allowed}")
    return cls(**variant)


__all__ = [
    "INVALID",
    "PENALTIES",
    "AutoReset",
    "Env",
    "EnvError",
    "KuhnPoker",
    "Negotiation",
    "Rollout",
    "TicTacToe",
    "Transition",
    "forfeit",
    "kuhn_poker",
    "make",
    "negotiation",
    "rollout",
    "tictactoe",
]
