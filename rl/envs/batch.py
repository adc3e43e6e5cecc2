"""Fixed-size batches of games: an auto-reset wrapper and a jitted rollout.

`AutoReset(env)` runs `B` games side by side. `step(state, action, key)` steps every game
and, where a game just ended, replaces it by a fresh one (`env.init(key_i)`) in the same
call, returning a `Transition` that still carries that move's rewards and `done` flags.

`rollout(env, policies, key, batch=B)` plays whole games with one policy per seat as a single
jitted `lax.scan` over `env.max_moves` steps (games that end early sit absorbed). A policy is
a single-state function `(key, state) -> action` (vmapped here), e.g. `env.random_action` or
one from `rl.opponents`; `policies[p]` plays seat `p`. SPIRAL self-play builds on this with
a model policy.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from rl.envs import core

Policy = Callable[[jax.Array, Any], Int[Array, ""]]


class Transition(NamedTuple):
    """One batched step of `AutoReset`."""

    state: Any  # [B] states, finished games already replaced by fresh ones
    rewards: Float[Array, "B 2"]  # this move's rewards (non-zero where a game ended)
    done: Bool[Array, " B"]  # the game ended on this move (and was reset)
    player: Int[Array, " B"]  # who moved


class Rollout(NamedTuple):
    """Result of `rollout`: the final states and the whole trajectory."""

    final: Any  # [B] terminal states (unless a game outlasts env.max_moves)
    returns: Float[Array, "B 2"]  # summed rewards: the outcome of each game
    actions: Int[Array, "T B"]  # action taken at step t (-1 once the game is over)
    players: Int[Array, "T B"]  # who moved at step t (-1 once the game is over)


def tree_where(cond: Bool[Array, " B"], a: Any, b: Any) -> Any:
    """Batches of states `a` where `cond`, else `b`, row by row (leaves `[B, ...]`)."""

    def pick(x, y):
        return jnp.where(cond.reshape(cond.shape + (1,) * (x.ndim - cond.ndim)), x, y)

    return jax.tree.map(pick, a, b)


def step_or_forfeit(
    env: core.Env, states: Any, actions: Int[Array, " B"], ok: Bool[Array, " B"], penalty
) -> Any:
    """`[B]` games stepped with `actions` where `ok`, else ended against the player to move
    with `penalty` (`core.forfeit`): how a reply that fails a format check is scored."""
    stepped = jax.vmap(env.step)(states, actions)
    forfeited = jax.vmap(lambda s: core.forfeit(s, penalty))(states)
    return tree_where(ok, stepped, forfeited)


class AutoReset:
    """A batch of `B` games of `env` that restarts each game as soon as it ends."""

    def __init__(self, env: core.Env, batch: int):
        if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
            raise core.EnvError(f"AutoReset batch={batch!r}: expected an int >= 1")
        self.env = env
        self.batch = batch

    def init(self, key: jax.Array) -> Any:
        """`[B]` fresh games."""
        return self.env.init_batch(key, self.batch)

    def step(self, state: Any, action: Int[Array, " B"], key: jax.Array) -> Transition:
        """Step all games; reset those that ended (their rewards are in the transition)."""
        action = jnp.asarray(action)
        if action.shape != (self.batch,):
            raise core.EnvError(
                f"AutoReset.step: action has shape {action.shape}, expected ({self.batch},)"
            )
        stepped = jax.vmap(self.env.step)(state, action)
        done = stepped.terminated & ~state.terminated
        fresh = self.init(key)
        return Transition(
            state=tree_where(stepped.terminated, fresh, stepped),
            rewards=stepped.rewards,
            done=done,
            player=state.current_player,
        )

    def random_actions(self, key: jax.Array, state: Any) -> Int[Array, " B"]:
        """One uniformly random legal action per game."""
        return jax.vmap(self.env.random_action)(jax.random.split(key, self.batch), state)


def _check_policies(env: core.Env, policies: Sequence[Policy]) -> tuple[Policy, ...]:
    policies = tuple(policies)
    if len(policies) != env.num_players or not all(callable(p) for p in policies):
        raise core.EnvError(
            f"rollout: expected {env.num_players} callables (key, state) -> action, one per "
            f"player; got {policies!r}"
        )
    return policies


def rollout(env: core.Env, policies: Sequence[Policy], key: jax.Array, *, batch: int) -> Rollout:
    """Play `batch` games to the end, `policies[p]` moving for player `p`.

    Compiled once per (env, policies, batch): `env` and the policies are static (hashable)
    arguments, so pass the same policy objects to reuse the compiled program.
    """
    policies = _check_policies(env, policies)
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise core.EnvError(f"rollout batch={batch!r}: expected an int >= 1")
    return _rollout(env, policies, key, batch)


class _Carry(NamedTuple):
    state: Any  # [B] games
    returns: Float[Array, "B 2"]  # rewards summed so far


class _Move(NamedTuple):
    action: Int[Array, " B"]  # -1 once the game is over
    player: Int[Array, " B"]  # -1 once the game is over


@functools.partial(jax.jit, static_argnums=(0, 1, 3))
def _rollout(env, policies, key, batch):
    k_init, k_play = jax.random.split(key)

    def act(k, s):
        # Every seat's policy proposes a move; the one whose turn it is gets played.
        choices = jnp.stack([pol(k, s) for pol in policies])  # [P]
        return choices[s.current_player]

    def play_one_move(carry: _Carry, k) -> tuple[_Carry, _Move]:
        state = carry.state
        action = jax.vmap(act)(jax.random.split(k, batch), state).astype(jnp.int32)  # [B]
        live = ~state.terminated
        nxt = jax.vmap(env.step)(state, action)
        move = _Move(jnp.where(live, action, -1), jnp.where(live, state.current_player, -1))
        return _Carry(nxt, carry.returns + nxt.rewards), move

    start = _Carry(env.init_batch(k_init, batch), jnp.zeros((batch, env.num_players), jnp.float32))
    end, moves = jax.lax.scan(play_one_move, start, jax.random.split(k_play, env.max_moves))
    return Rollout(final=end.state, returns=end.returns, actions=moves.action, players=moves.player)
