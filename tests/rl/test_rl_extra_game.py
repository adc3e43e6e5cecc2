"""A game added from outside, through the public registry only, plays everywhere the built-in
games do: the conformance harness, the text layer, self-play rollout, evaluation against the
random and the optimal opponent, and corpus transcripts.

The game is a small Nim: a pile of stones, each move takes 1 (`[1]`) or 2 (`[2]`), whoever takes
the last stone wins. Nothing in `rl` knows it: it is defined here and registered for the
module's tests (`rl.envs.register`), then removed (`rl.envs.unregister`).
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _spiral_model import tiny_model
from flax import struct
from jaxtyping import Array, Bool, Float, Int

import rl.envs as E
import rl.opponents as O
import rl.text as T
import rl.transcripts as R
from rl.envs import core
from rl.envs.conformance import check_env
from rl.envs.prompt import outcome, turn
from rl.selfplay import GenerationConfig, ModelPolicy, evaluate
from rl.selfplay import rollout as ro
from rl.selfplay.policy import Replies

BAD, TOO_MANY, OVER = 1, 2, 3  # `check` codes


@struct.dataclass
class NimState:
    current_player: Int[Array, ""]
    legal_action_mask: Bool[Array, " 2"]
    rewards: Float[Array, " 2"]
    terminated: Bool[Array, ""]
    move_count: Int[Array, ""]
    stones: Int[Array, ""]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Nim(core.Env):
    stones: int = 5

    name: ClassVar[str] = "nim"
    num_actions: ClassVar[int] = 2
    action_names: ClassVar[tuple[str, ...]] = ("[1]", "[2]")
    REASONS: ClassVar[tuple[str, ...]] = ("ok", "not a move", "not that many stones", "over")

    @property
    def max_moves(self) -> int:  # type: ignore[override]
        return self.stones

    def init(self, key):
        del key  # no randomness
        return NimState(
            current_player=jnp.int32(0),
            legal_action_mask=jnp.arange(2) < self.stones,
            rewards=jnp.zeros(2, jnp.float32),
            terminated=jnp.bool_(False),
            move_count=jnp.int32(0),
            stones=jnp.int32(self.stones),
        )

    def check(self, state, action):
        action = jnp.asarray(action, jnp.int32)
        known = (action >= 0) & (action < 2)
        enough = state.stones > jnp.clip(action, 0, 1)
        return jnp.select(
            [state.terminated, ~known, ~enough], [OVER, BAD, TOO_MANY], core.OK
        ).astype(jnp.int32)

    def step(self, state, action):
        action = jnp.asarray(action, jnp.int32)
        player, live = state.current_player, ~state.terminated
        legal = self.check(state, action) == core.OK
        stones = state.stones - jnp.where(legal, jnp.clip(action, 0, 1) + 1, 0)
        won = legal & (stones == 0)
        rewards = jnp.where(legal, core.end_rewards(player, won), core.penalty_rewards(player))
        terminated = state.terminated | (live & (~legal | won))
        return NimState(
            current_player=jnp.where(legal & ~won, 1 - player, player),
            legal_action_mask=(jnp.arange(2) < stones) & ~terminated,
            rewards=jnp.where(live, rewards, 0.0).astype(jnp.float32),
            terminated=terminated,
            move_count=state.move_count + legal.astype(jnp.int32),
            stones=stones,
        )


def describe(env, row, player, messages=None):
    text = (
        f"Game: Nim. You are Player {player}. The players take turns taking 1 or 2 stones; "
        f"whoever takes the last stone wins.\nStones left: {row.stones}.\n"
    )
    if row.terminated:
        return text + outcome(row, player)
    legal = [env.action_names[a] for a, ok in enumerate(row.legal_action_mask) if ok]
    return text + turn(row, player, legal)


def read(text):
    match = re.search(r"\[([12])\]", text)
    if match is None:
        return core.INVALID, "no [1] or [2] found"
    return int(match.group(1)) - 1, ""


@dataclasses.dataclass(frozen=True)
class LeaveAMultipleOfThree:
    """Perfect Nim: leave the other player a multiple of 3 stones when possible."""

    def __call__(self, key, state):
        good = state.stones % 3 - 1  # the action that leaves a multiple of 3, -1 if none
        return jnp.where(good >= 0, good, core.sample_mask(key, state.legal_action_mask))


def player(rng, env, row, kind):
    legal = [a for a, ok in enumerate(row.legal_action_mask) if ok]
    best = [a for a in legal if (row.stones - a - 1) % 3 == 0]
    action = int(rng.choice(best if best and kind != "random" else legal))
    return action, f"{row.stones} stones left. \\boxed{{[{action + 1}]}}"


NIM = E.Game(
    env=Nim,
    title="Nim",
    describe=describe,
    read=read,
    example="[1]",
    optimal=lambda env: LeaveAMultipleOfThree(),
    player=player,
)


@pytest.fixture(scope="module", autouse=True)
def registered():
    E.register(NIM)
    yield NIM
    E.unregister("nim")
    assert "nim" not in E.GAMES


class Scripted:
    """A stand-in for the model: takes one stone while it can, then two."""

    pad_id = 0

    def encode(self, prompt):
        return list(prompt.encode()[-8:])

    def with_sampling(self, sampling):  # evaluation asks for its own sampling settings
        return self

    def generate(self, params, prompts, key, *, rows=None):
        moves = [re.search(r"Legal moves: (.*)\.\n", p).group(1).split(", ")[0] for p in prompts]
        texts = [f"I take it. \\boxed{{{m}}}" for m in moves]
        toks = [np.frombuffer(t.encode(), np.uint8).astype(np.int32) for t in texts]
        return Replies(texts, toks, [np.zeros(len(t), np.float32) for t in toks], 0.0)


def test_registered_once_and_made_by_name():
    assert E.make("nim", stones=4) == Nim(stones=4) and E.get("nim") is NIM
    with pytest.raises(E.EnvError, match="already registered"):
        E.register(NIM)
    with pytest.raises(E.EnvError, match="no option"):
        E.make("nim", piles=3)
    check_env(E.make("nim"), jax.random.key(0), batch=16)


def test_text_layer_uses_the_games_wording_and_grammar():
    env = E.make("nim")
    state = env.init(None)
    prompt = T.render(env, state, 0)
    assert "Stones left: 5." in prompt and "Legal moves: [1], [2]." in prompt
    assert prompt.endswith("for example \\boxed{[1]}.")
    assert T.parse(env, state, "Two. \\boxed{[2]}") == (1, "")
    assert T.parse(env, state, "[2]", mode="env") == (1, "")
    action, reason = T.parse(env, state, "\\boxed{3}")
    assert action == T.INVALID and "legal moves" in reason


def test_self_play_and_evaluation_with_a_scripted_policy():
    cfg = ro.RolloutConfig(games=("nim",), slots=2)
    out = ro.collect(Scripted(), None, jax.random.PRNGKey(0), config=cfg, episodes_per_slot=1)
    assert len(out.episodes) == 2  # always one stone: 5 moves, player 0 takes the last
    for ep in out.episodes:
        assert ep.game == "nim" and ep.moves == 5 and ep.returns == (1.0, -1.0)
        assert [out.samples[i].role for i in ep.samples] == [0, 1, 0, 1, 0]
        assert all(out.samples[i].valid for i in ep.samples)
    wins = {}
    for opponent in ("random", "optimal"):
        rows = evaluate.evaluate(
            Scripted(), None, jax.random.PRNGKey(1), opponent=opponent, games=("nim",), slots=2
        )
        (row,) = [r for r in rows if r["role"] == "all"]
        assert row["game"] == "nim" and row["n"] == 4 and row["invalid"] == 0.0
        wins[opponent] = row["win"]
    # the optimal opponent is the registered one: taking one stone at a time loses every game
    assert isinstance(O.fixed_policy(E.make("nim"), "optimal"), LeaveAMultipleOfThree)
    assert wins["optimal"] == 0.0


def test_a_model_plays_it_in_self_play_and_against_random():
    config, params, tokenizer = tiny_model()
    policy = ModelPolicy(config, tokenizer, GenerationConfig(max_new_tokens=4))
    cfg = ro.RolloutConfig(games=("nim",), slots=2)
    out = ro.collect(policy, params, jax.random.PRNGKey(2), config=cfg, min_samples=2)
    assert len(out.samples) >= 2 and {s.game for s in out.samples} == {"nim"}
    assert all(ep.model_seats == (0, 1) for ep in out.episodes)
    rows = evaluate.evaluate(
        policy, params, jax.random.PRNGKey(3), opponent="random", games=("nim",), slots=2,
        games_per_slot=1,
    )  # fmt: skip
    assert {(r["game"], r["role"]) for r in rows} == {("nim", 0), ("nim", 1), ("nim", "all")}
    assert rows[-1]["n"] == 2


def test_corpus_transcripts_replay():
    env = E.make("nim")
    for game in itertools.islice(R.transcripts(seed=0, games=("nim",)), 3):
        state = env.init(None)
        for t in game.turns:
            assert T.render(env, state, t.player) == t.prompt
            assert T.parse(env, state, t.reply) == (t.action, "")
            state = env.step(state, t.action)
        assert bool(state.terminated)
        np.testing.assert_allclose(game.returns, [1.0, -1.0] if t.player == 0 else [-1.0, 1.0])
