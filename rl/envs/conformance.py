"""One conformance harness every env must pass (run by tests/rl on each env and variant).

`check_env(env, key)` raises `AssertionError` naming the first broken property:

- the state contract of `rl.envs.core` (field names, shapes, dtypes) by `jax.eval_shape`;
- a fresh game: not over, zero rewards, zero moves, at least one legal move;
- batched random play (one jitted `lax.scan`): every sampled move is legal by `check`, the
  mask agrees with `check` (mask-based envs), a legal move adds one to `move_count`, rewards
  are zero until the end and zero-sum in {-1, 0, 1} at the end, every game ends within
  `env.max_moves`, the mask is empty once over, and a finished game is absorbing;
- invalid moves (`INVALID`, `num_actions`) end the game with -1 for the mover, 0 for the other;
- `vmap(step)` agrees with stepping games one at a time.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rl.envs import core

_FIELDS = {
    "current_player": ((), np.int32),
    "rewards": ((2,), np.float32),
    "terminated": ((), np.bool_),
    "move_count": ((), np.int32),
}


@functools.cache
def _jit(env: core.Env, method: str, batched: bool = False):
    fn = getattr(env, method)
    return jax.jit(jax.vmap(fn) if batched else fn)


def check_state_contract(env: core.Env, key: jax.Array) -> None:
    shapes = jax.eval_shape(env.init, key)
    for name, (shape, dtype) in _FIELDS.items():
        leaf = getattr(shapes, name, None)
        assert leaf is not None, f"{env.name}: state has no field {name!r}"
        assert leaf.shape == shape and leaf.dtype == dtype, (
            f"{env.name}: {name} is {leaf.dtype}{leaf.shape}, expected {np.dtype(dtype)}{shape}"
        )
    mask = shapes.legal_action_mask
    assert mask.dtype == np.bool_ and mask.ndim == 1, f"{env.name}: legal_action_mask {mask}"
    batched = jax.eval_shape(lambda k: env.init_batch(k, 3), key)
    same = jax.tree.map(
        lambda a, b: b.shape == (3, *a.shape) and a.dtype == b.dtype, shapes, batched
    )
    assert all(jax.tree.leaves(same)), f"{env.name}: init_batch disagrees with init's shapes"
    stepped = jax.eval_shape(env.step, shapes, jnp.int32(0))
    same = jax.tree.map(lambda a, b: a.shape == b.shape and a.dtype == b.dtype, shapes, stepped)
    assert all(jax.tree.leaves(same)), f"{env.name}: step changes the state's shapes or dtypes"


def _mask_based(env: core.Env, state: Any) -> bool:
    return state.legal_action_mask.shape[-1] == env.num_actions


def _random_play(env: core.Env, key: jax.Array, batch: int):
    """Scan random legal play; per step return what the invariants need."""
    states = env.init_batch(key, batch)

    def body(state, k):
        actions = jax.vmap(env.random_action)(jax.random.split(k, batch), state)
        codes = jax.vmap(env.check)(state, actions)
        nxt = jax.vmap(env.step)(state, actions)
        if _mask_based(env, state):
            all_codes = jax.vmap(jax.vmap(env.check, (None, 0)), (0, None))(
                state, jnp.arange(env.num_actions)
            )  # [B, A]
            mask_agrees = jnp.all((all_codes == core.OK) == state.legal_action_mask, axis=1)
        else:
            mask_agrees = jnp.ones(batch, bool)
        again = jax.vmap(env.step)(nxt, actions)
        same = jax.tree.map(
            lambda a, b: jnp.all((a == b).reshape(batch, -1), axis=1),
            again.replace(rewards=nxt.rewards),
            nxt,
        )
        absorbing = jnp.all(jnp.stack(jax.tree.leaves(same)), axis=0) & jnp.all(
            again.rewards == 0, axis=1
        )
        out = dict(
            live=~state.terminated,
            code=codes,
            mask_agrees=mask_agrees,
            moves_up=nxt.move_count - state.move_count,
            rewards=nxt.rewards,
            ended=nxt.terminated,
            mask_after=jnp.any(nxt.legal_action_mask, axis=1),
            absorbing=absorbing | ~nxt.terminated,
            player_ok=(nxt.current_player == 0) | (nxt.current_player == 1),
        )
        return nxt, out

    return jax.lax.scan(body, states, jax.random.split(key, env.max_moves))


def check_random_play(env: core.Env, key: jax.Array, batch: int = 64) -> None:
    final, out = jax.jit(_random_play, static_argnums=(0, 2))(env, key, batch)
    out = jax.tree.map(np.asarray, out)
    live = out["live"]  # [T, B]
    name = env.name
    assert np.all(out["code"][live] == core.OK), f"{name}: random_action sampled an illegal move"
    assert np.all(out["mask_agrees"][live]), f"{name}: legal_action_mask disagrees with check"
    assert np.all(out["moves_up"][live] == 1), f"{name}: a legal move did not count one move"
    assert np.all(out["moves_up"][~live] == 0), f"{name}: a finished game counted a move"
    rewards = out["rewards"]
    ending = live & out["ended"]
    assert np.all(rewards[live & ~out["ended"]] == 0), f"{name}: rewards before the end"
    end_r = rewards[ending]
    assert np.all(end_r.sum(-1) == 0), f"{name}: legal play ended with non-zero-sum rewards"
    assert np.all(np.isin(end_r, [-1.0, 0.0, 1.0])), f"{name}: end rewards outside -1/0/1"
    assert np.all(np.asarray(final.terminated)), f"{name}: a game outlasted max_moves"
    assert not np.any(out["mask_after"][out["ended"]]), f"{name}: mask not empty after the end"
    assert np.all(out["absorbing"]), f"{name}: stepping a finished game changed it"
    assert np.all(out["player_ok"]), f"{name}: current_player outside {{0, 1}}"
    fresh = jax.device_get(jax.jit(env.init_batch, static_argnums=1)(key, batch))
    assert not np.any(fresh.terminated) and not np.any(fresh.move_count), f"{name}: init_batch"
    assert not np.any(fresh.rewards) and np.all(np.any(fresh.legal_action_mask, axis=1))


def check_invalid_moves(env: core.Env, key: jax.Array) -> None:
    state = _jit(env, "init")(key)
    for bad in (core.INVALID, env.num_actions, 2**31 - 1):
        nxt = _jit(env, "step")(state, jnp.int32(bad))
        mover = int(state.current_player)
        expect = np.where(np.arange(2) == mover, -1.0, 0.0)
        assert bool(nxt.terminated), f"{env.name}: action {bad} did not end the game"
        assert np.array_equal(np.asarray(nxt.rewards), expect), (
            f"{env.name}: action {bad} scored {nxt.rewards}, expected {expect}"
        )
        assert int(_jit(env, "check")(state, jnp.int32(bad))) != core.OK, (
            f"{env.name}: check accepted {bad}"
        )


def _take(tree: Any, i: int) -> Any:
    return jax.tree.map(lambda x: x[i], tree)


def check_vmap_matches_loop(env: core.Env, key: jax.Array, batch: int = 5) -> None:
    keys = jax.random.split(key, batch)
    states = _jit(env, "init", True)(keys)
    for t in range(3):
        actions = _jit(env, "random_action", True)(jax.random.split(keys[t], batch), states)
        batched = _jit(env, "step", True)(states, actions)
        host, host_next, host_actions = jax.device_get((states, batched, actions))
        for i in range(batch):
            one = _jit(env, "step")(_take(host, i), host_actions[i])
            row = _take(host_next, i)
            equal = jax.tree.map(lambda a, b: np.array_equal(a, b), one, row)
            assert all(jax.tree.leaves(equal)), f"{env.name}: vmap(step) != step at game {i}"
        states = batched


def check_env(env: core.Env, key: jax.Array, *, batch: int = 64) -> None:
    """Run every check above on `env`."""
    k1, k2, k3, k4 = jax.random.split(key, 4)
    check_state_contract(env, k1)
    fresh = _jit(env, "init")(k1)
    assert not bool(fresh.terminated), f"{env.name}: a fresh game is already over"
    assert int(fresh.move_count) == 0 and not np.any(np.asarray(fresh.rewards))
    assert bool(np.any(np.asarray(fresh.legal_action_mask))), f"{env.name}: no legal first move"
    check_random_play(env, k2, batch)
    check_invalid_moves(env, k3)
    check_vmap_matches_loop(env, k4)
