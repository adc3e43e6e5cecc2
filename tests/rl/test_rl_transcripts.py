"""Game transcripts of the corpus: replay through the envs, parse back, player mix, determinism."""

import itertools

import jax
import numpy as np
import pytest

import rl.envs as E
import rl.text as T
import rl.transcripts as R
from rl.envs import kuhn_poker as K


def _games(seed, k, games=R.GAMES):
    return list(itertools.islice(R.transcripts(seed=seed, games=games), k))


@pytest.fixture(scope="module")
def sample():
    return _games(seed=7, k=12)


def test_transcripts_replay_to_the_same_prompts_and_outcomes(sample):
    step = {g: jax.jit(E.make(g, **E.get(g).corpus_options).step) for g in R.GAMES}
    assert {t.game for t in sample} == set(R.GAMES)
    for game in sample:
        env = E.make(game.game, **game.options)
        state = jax.device_get(env.init(jax.random.PRNGKey(game.key_seed)))
        total = np.zeros(2)
        for turn in game.turns:
            assert int(state.current_player) == turn.player
            assert T.render(env, state, turn.player) == turn.prompt
            assert T.parse(env, state, turn.reply) == (turn.action, "")
            assert T.boxed_action_text(turn.reply) is not None
            legal = np.flatnonzero(np.asarray(state.legal_action_mask))
            if game.game == "tictactoe":  # the reply first lists the free cells, move starred
                free = ", ".join(f"{c}*" if c == turn.action else str(c) for c in legal)
                assert turn.reply.startswith(f"Free cells: {free}. ")
            if game.game == "kuhn_poker":  # ... or the two legal actions
                a, b = (K.ACTION_NAMES[x] for x in legal)
                assert f" and may {a} or {b}. " in turn.reply
            state = jax.device_get(step[game.game](state, turn.action))
            total += np.asarray(state.rewards)
        assert bool(state.terminated), game.game
        np.testing.assert_allclose(total, game.returns)


def test_conversations_are_the_turns_in_chat_form(sample):
    first = _games(seed=7, k=3)
    turns = [t for g in first for t in g.turns]
    convs = list(R.game_conversations(seed=7, n=len(turns)))
    assert len(convs) == len(turns)
    for conv, turn in zip(convs, turns, strict=True):
        assert [m["role"] for m in conv] == ["user", "assistant"]
        assert conv[0]["content"] == turn.prompt and conv[1]["content"] == turn.reply
    replies = [t.reply for g in sample for t in g.turns]
    assert max(map(len, replies)) < 200
    assert len(list(R.game_conversations(seed=1, n=5))) == 5


def test_deterministic_given_the_seed():
    a = list(R.game_conversations(seed=3, n=40))
    assert a == list(R.game_conversations(seed=3, n=40))
    assert a != list(R.game_conversations(seed=4, n=40))


def test_player_mix_is_as_documented():
    games = _games(seed=11, k=240, games=("tictactoe",))
    kinds = [k for g in games for k in g.kinds]
    n = len(kinds)
    for kind, p in R.PLAYER_MIX.items():
        count = kinds.count(kind)
        assert abs(count - n * p) < 4 * np.sqrt(n * p * (1 - p)), (kind, count, n)
    # heuristic TicTacToe players never miss a win (checked by brute force over the cells)
    for g in games:
        board = np.full(9, -1)
        for turn in g.turns:
            me = turn.player
            wins = [
                c
                for c in range(9)
                if board[c] < 0
                and any(
                    all((board[i] == me) or i == c for i in line) and c in line
                    for line in E.tictactoe.LINES.tolist()
                )
            ]
            if g.kinds[me] == "heuristic" and wins:
                assert turn.action in wins
            board[turn.action] = me


def test_kuhn_heuristic_follows_its_card_rule():
    games = _games(seed=5, k=20, games=("kuhn_poker",))
    seen = 0
    kuhn = E.make("kuhn_poker")
    init, step = jax.jit(kuhn.init), jax.jit(kuhn.step)
    for g in games:
        state = jax.device_get(init(jax.random.PRNGKey(g.key_seed)))
        for turn in g.turns:
            if g.kinds[turn.player] == "heuristic":
                r = int(state.round)
                card = int(state.cards[r, turn.player])
                if card == 2:
                    assert turn.action in (K.BET, K.CALL)
                if card == 0:
                    assert turn.action in (K.CHECK, K.FOLD)
                seen += 1
            state = jax.device_get(step(state, turn.action))
    assert seen > 15


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="games"):
        next(R.game_conversations(seed=0, games=("chess",)))
    with pytest.raises(ValueError, match="mix"):
        next(R.game_conversations(seed=0, mix={"perfect": 1.0}))
    with pytest.raises(ValueError, match="n="):
        next(R.game_conversations(seed=0, n=-1))
