"""The shared conformance harness on every env and variant, and the batch helpers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rl.envs as E
from rl.envs.conformance import check_env

ENVS = [
    ("tictactoe", {}),
    ("kuhn_poker", {}),
    ("kuhn_poker", {"variant": "spiral_v1"}),
    ("kuhn_poker", {"variant": "textarena", "rounds": 3}),
    ("negotiation", {}),
]


@pytest.mark.parametrize("name, options", ENVS, ids=[f"{n}-{o}" for n, o in ENVS])
def test_conformance(name, options):
    check_env(E.make(name, **options), jax.random.key(7), batch=37)


def test_harness_catches_a_broken_env():
    class ZeroSumBroken(E.TicTacToe):
        def step(self, state, action):
            nxt = super().step(state, action)
            return nxt.replace(rewards=jnp.where(nxt.terminated, nxt.rewards * 2, nxt.rewards))

    with pytest.raises(AssertionError, match="outside -1/0/1"):
        check_env(ZeroSumBroken(), jax.random.key(0), batch=13)


def test_make_returns_equal_hashable_envs():
    assert E.make("kuhn_poker", variant="spiral_v1") == E.make("kuhn", variant="spiral_v1")
    assert hash(E.make("tictactoe")) == hash(E.make("tic_tac_toe"))
    assert E.make("kuhn_poker") != E.make("kuhn_poker", variant="spiral_v1")
    env = E.make("negotiation")
    assert (env.num_players, env.max_moves) == (2, 10)


def test_auto_reset_keeps_batch_and_reports_outcomes():
    env = E.make("tictactoe")
    batch = E.AutoReset(env, 31)
    key = jax.random.key(0)
    state = batch.init(key)
    step = jax.jit(batch.step)
    wins, done_total = np.zeros(2), 0
    for _ in range(40):
        key, k_act, k_reset = jax.random.split(key, 3)
        tr = step(state, batch.random_actions(k_act, state), k_reset)
        done = np.asarray(tr.done)
        r = np.asarray(tr.rewards)
        assert np.all(r[~done] == 0) and np.all(r[done].sum(1) == 0)
        assert not np.any(np.asarray(tr.state.terminated))  # finished games were reset
        assert np.all(np.asarray(tr.state.move_count)[done] == 0)
        wins += (r[done] > 0).sum(0)
        done_total += done.sum()
        state = tr.state
    assert done_total > 31 * 40 / 9  # games end at least every 9 moves
    assert wins[0] > wins[1]  # the first player wins more often under random play
    with pytest.raises(E.EnvError, match="shape"):
        batch.step(state, jnp.zeros(5, jnp.int32), key)
    with pytest.raises(E.EnvError, match="batch"):
        E.AutoReset(env, 0)


def test_rollout_records_the_trajectory():
    env = E.make("kuhn_poker", variant="spiral_v1")
    pol = env.random_action
    out = E.rollout(env, (pol, pol), jax.random.key(1), batch=17)
    actions, players = np.asarray(out.actions), np.asarray(out.players)
    assert actions.shape == (env.max_moves, 17)
    moves = (actions >= 0).sum(0)
    assert np.array_equal(moves, np.asarray(out.final.move_count))
    assert np.array_equal(players >= 0, actions >= 0)
    assert np.all(np.abs(np.asarray(out.returns)) == 1)  # spiral_v1 never draws
    with pytest.raises(E.EnvError, match="callables"):
        E.rollout(env, (pol,), jax.random.key(1), batch=17)
    with pytest.raises(E.EnvError, match="batch"):
        E.rollout(env, (pol, pol), jax.random.key(1), batch=0)


def test_forfeit_conventions():
    env = E.make("tictactoe")
    state = env.step(env.init(None), 4)  # player 1 to move
    for name, expect in [("env", [0.0, -1.0]), ("spiral", [0.5, -1.5]), ("eval", [1.0, -1.0])]:
        out = E.forfeit(state, name)
        assert bool(out.terminated) and np.asarray(out.rewards).tolist() == expect
        assert not np.any(np.asarray(out.legal_action_mask))
    assert np.asarray(E.forfeit(state, (-2, 3)).rewards).tolist() == [3.0, -2.0]
    again = E.forfeit(E.forfeit(state, "eval"), "eval")
    assert np.asarray(again.rewards).tolist() == [0.0, 0.0]  # a finished game is absorbing
    with pytest.raises(E.EnvError, match="convention"):
        E.forfeit(state, "train")
    with pytest.raises(E.EnvError, match="pair"):
        E.forfeit(state, (1.0,))
