"""The contract every game in `rl.envs` follows, and the pieces they share.

A game is a frozen, keyword-only dataclass (its own config: hashable, so it can be a static
argument of `jax.jit`) with pure single-state methods; `jax.vmap` makes them batched:

- `init(key) -> State`: a fresh game (the key deals cards; deterministic games ignore it).
- `step(state, action) -> State`: one move by `state.current_player`.
- `check(state, action) -> int32`: 0 when `action` is a legal move now, otherwise a positive
  code indexing the game's `REASONS` tuple (why it is not). `step` and the text layer both use
  it, so the rules live in one place.
- `random_action(key, state) -> int32`: uniform over the legal moves.

Every `State` is a `flax.struct` dataclass with at least `current_player` (int32 scalar),
`legal_action_mask` (bool `[A]`, all False once the game is over), `rewards` (float32 `[2]`,
this transition's rewards: non-zero only on the move that ends the game), `terminated` (bool
scalar) and `move_count` (int32 scalar), plus game-specific fields.

Invalid moves. Any action that `check` rejects (an occupied cell, `[call]` with no bet,
`rl.text.INVALID == -1`, an id outside `[0, num_actions)`) is an invalid move: the game ends
at once and the env scores it -1 for the offender and 0 for the other player (TextArena
0.6.4's env scoring, the one SPIRAL trained with; there are no retries). The text layer's
other conventions (SPIRAL's format check, -1.5 / +0.5; evaluation's -1 / +1) are applied with
`forfeit`, which ends a game with any given pair of rewards. A terminated state is absorbing:
stepping it changes nothing and returns zero rewards, so summing `rewards` over a trajectory
gives each player's result.

SPIRAL cuts games off as draws after 50 moves; no game here can last that long (`max_moves`
is 9, 3 x rounds and `moves`), so there is no truncation.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Protocol

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

INVALID = -1  # the action id of "no legal action" (rl.text.INVALID is the same number)
OK = 0  # `check` code of a legal move

# Rewards (offender, other player) for a move that is not a legal action, per convention.
PENALTIES: dict[str, tuple[float, float]] = {
    "env": (-1.0, 0.0),  # the env's own scoring (TextArena 0.6.4, no retries)
    "spiral": (-1.5, 0.5),  # SPIRAL's training-time format check
    "eval": (-1.0, 1.0),  # evaluation games (also TextArena 0.7.4's env scoring)
}


class EnvError(ValueError):
    """Bad input to an `rl.envs` entry point (unknown game, bad variant, bad shape)."""


class State(Protocol):
    """The fields every game state has (each game adds its own)."""

    current_player: Int[Array, ""]
    legal_action_mask: Bool[Array, " A"]
    rewards: Float[Array, " 2"]
    terminated: Bool[Array, ""]
    move_count: Int[Array, ""]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Env:
    """Base class of the games: shared defaults for mask-based action spaces.

    Subclasses set `name`, `num_actions`, `max_moves`, `action_names`, `REASONS` and implement
    `init`, `step` and `check`.
    """

    name: ClassVar[str] = ""
    num_players: ClassVar[int] = 2
    num_actions: ClassVar[int] = 0
    max_moves: ClassVar[int] = 0  # no game lasts longer; rollouts scan this many steps
    action_names: ClassVar[tuple[str, ...]] = ()
    REASONS: ClassVar[tuple[str, ...]] = ("ok",)

    def init(self, key: jax.Array) -> Any:
        raise NotImplementedError

    def init_batch(self, key: jax.Array, batch: int) -> Any:
        """`[batch]` fresh games (games may override this with one batched random draw)."""
        return jax.vmap(self.init)(jax.random.split(key, batch))

    def step(self, state: Any, action: Int[Array, ""] | int) -> Any:
        raise NotImplementedError

    def check(self, state: Any, action: Int[Array, ""] | int) -> Int[Array, ""]:
        raise NotImplementedError

    def is_legal(self, state: Any, action: Int[Array, ""] | int) -> Bool[Array, ""]:
        """Whether `action` is a legal move for the player to move."""
        return self.check(state, action) == OK

    def random_action(self, key: jax.Array, state: Any) -> Int[Array, ""]:
        """A uniformly random legal action (0 when none is legal, i.e. after the end)."""
        return sample_mask(key, state.legal_action_mask)


def sample_mask(key: jax.Array, mask: Bool[Array, " A"]) -> Int[Array, ""]:
    """Uniform sample of an index where `mask` is True, from one uniform draw.

    Picks the k-th True entry, k = floor(u * count): one random number per call instead of one
    per action (`jax.random.categorical`), which is most of the cost of random play.
    """
    cum = jnp.cumsum(mask.astype(jnp.int32))  # [A]
    count = cum[-1]
    k = jnp.floor(jax.random.uniform(key) * count).astype(jnp.int32)
    return jnp.argmax(cum > k).astype(jnp.int32)


def end_rewards(winner: Int[Array, ""], decided: Bool[Array, ""]) -> Float[Array, " 2"]:
    """+1 / -1 for `winner` (0 or 1) when `decided`, else 0 / 0 (a draw)."""
    sign = jnp.where(winner == 0, 1.0, -1.0)
    return jnp.where(decided, jnp.stack([sign, -sign]), jnp.zeros(2)).astype(jnp.float32)


def penalty_rewards(
    offender: Int[Array, ""], penalty: tuple[float, float] = PENALTIES["env"]
) -> Float[Array, " 2"]:
    """Rewards `[2]` giving `penalty[0]` to `offender` and `penalty[1]` to the other player."""
    bad, other = penalty
    return jnp.where(jnp.arange(2) == offender, bad, other).astype(jnp.float32)


def forfeit(state: Any, penalty: tuple[float, float] | str = "env") -> Any:
    """End the game now against `state.current_player` with rewards `penalty`.

    `penalty` is a convention name of `PENALTIES` or a pair (offender, other). Used for
    replies rejected before the env sees them (SPIRAL's format check). A state that has
    already terminated is returned with zero rewards, as `step` would.
    """
    penalty = check_penalty(penalty)
    live = ~state.terminated
    rewards = jnp.where(live, penalty_rewards(state.current_player, penalty), 0.0)
    return state.replace(
        terminated=jnp.ones_like(state.terminated),
        rewards=rewards.astype(jnp.float32),
        legal_action_mask=jnp.zeros_like(state.legal_action_mask),
    )


def check_penalty(penalty: tuple[float, float] | str) -> tuple[float, float]:
    """Resolve a convention name or an explicit (offender, other) pair; reject anything else."""
    if isinstance(penalty, str):
        if penalty not in PENALTIES:
            raise EnvError(
                f"unknown invalid-move convention {penalty!r}; expected one of {sorted(PENALTIES)}"
                " or a pair of floats (offender, other)"
            )
        return PENALTIES[penalty]
    try:
        bad, other = (float(x) for x in penalty)
    except (TypeError, ValueError) as err:
        raise EnvError(
            f"penalty must be a convention name {sorted(PENALTIES)} or a pair of floats "
            f"(offender, other); got {penalty!r}"
        ) from err
    return bad, other
