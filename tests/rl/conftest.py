"""Shared fixtures of the rl tests: envs and a scripted-play helper, compiled once."""

import functools

import jax
import pytest


@functools.cache
def _jitted(env, method):
    return jax.jit(getattr(env, method))


def _play(env, actions, state=None, key=None):
    """Play `actions` in order from `state` (or a fresh game); return all states, first included."""
    if state is None:
        state = _jitted(env, "init")(jax.random.key(0) if key is None else key)
    states = [state]
    for a in actions:
        state = _jitted(env, "step")(state, a)
        states.append(state)
    return states


@pytest.fixture(scope="session")
def play():
    """`play(env, actions, state=None, key=None) -> [state_0, ..., state_n]` (jitted steps)."""
    return _play


@pytest.fixture(scope="session")
def jitted():
    """`jitted(env, "step")`: one compiled function per (env, method) for the session."""
    return _jitted
