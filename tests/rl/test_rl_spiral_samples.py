"""What trains: each turn's advantage comes from its own seat's return, the draw of more than
`samples_per_step` samples is SPIRAL's seeded random one, and the sampling log-probabilities
the policy records are the learner's on the same tokens (the first PPO ratio is 1)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _spiral_model import tiny_model

import jaxlens
import rl.selfplay as sp
from rl import envs, text
from rl.selfplay import learner, rollout, train


def _sample(game, role, episode):
    ids = np.array([5, 6], np.int32)
    return rollout.Sample(ids, ids, np.zeros(2, np.float32), game, role, 0, episode, "", True)


def _rollout(returns_by_episode, game="kuhn_poker"):
    samples, episodes = [], []
    for e, returns in enumerate(returns_by_episode):
        first = len(samples)
        samples += [_sample(game, role, e) for role in (1, 0, 1, 0)]  # seat 1 opens, as in Kuhn
        idx = tuple(range(first, len(samples)))
        episodes.append(rollout.Episode(game, returns, 4, -1, (0, 1), idx))
    return rollout.Rollout(samples, episodes, {}, 0, 0, 0)


def test_each_turn_gets_its_own_seats_advantage():
    """Seat 0 wins 1 and seat 1 loses 1 (then the reverse): with baselines at 0 each turn's
    advantage is its own seat's return; swapping seats would flip every sign."""
    roll = _rollout([(1.0, -1.0), (-1.0, 1.0)])
    cfg = sp.SpiralConfig(alpha=0.5)
    adv, baselines = train.advantages_of(roll, {}, cfg)
    roles = np.array([s.role for s in roll.samples])
    episode = np.array([s.episode for s in roll.samples])
    want_first = np.where(roles == 0, 1.0, -1.0)
    np.testing.assert_array_equal(adv[episode == 0], want_first[episode == 0])
    # second game: the baselines moved to +0.5 (seat 0) and -0.5 (seat 1) after the first
    want_second = np.where(roles == 0, -1.0 - 0.5, 1.0 + 0.5)
    np.testing.assert_array_equal(adv[episode == 1], want_second[episode == 1])
    assert baselines == {("kuhn_poker", 0): -0.25, ("kuhn_poker", 1): 0.25}


def _cfg(draw="random"):
    return sp.SpiralConfig(samples_per_step=8, sample_draw=draw)


def test_random_draw_is_seeded_reproducible_and_not_the_first():
    adv = np.zeros(40, np.float32)
    adv[::2] = np.arange(1, 21)  # 20 non-zero advantages
    key = jax.random.PRNGKey(7)
    a = train.choose_samples(adv, _cfg(), key)
    assert len(a) == 8 and len(set(a.tolist())) == 8 and np.all(adv[a] != 0)
    np.testing.assert_array_equal(a, train.choose_samples(adv, _cfg(), key))  # same key, same
    assert not np.array_equal(a, np.flatnonzero(adv)[:8])
    draws = {tuple(train.choose_samples(adv, _cfg(), jax.random.PRNGKey(k))) for k in range(20)}
    assert len(draws) > 15
    # late samples (long games) are drawn about as often as early ones
    counts = np.zeros(40)
    for k in range(200):
        counts[train.choose_samples(adv, _cfg(), jax.random.PRNGKey(k))] += 1
    assert counts[:20].sum() == pytest.approx(counts[20:].sum(), rel=0.25)
    first = train.choose_samples(adv, _cfg("first"), key)
    np.testing.assert_array_equal(first, np.flatnonzero(adv)[:8])
    few = np.array([0, 1, 0, 2], np.float32)  # fewer than samples_per_step: all of them
    np.testing.assert_array_equal(train.choose_samples(few, _cfg(), key), [1, 3])


def test_bad_draw_and_eval_sampling():
    with pytest.raises(ValueError, match="sample_draw"):
        sp.SpiralConfig(sample_draw="last")
    with pytest.raises(ValueError, match="eval_sampling"):
        sp.SpiralConfig(eval_sampling=0.6)


def test_recorded_logprobs_equal_the_learners_first_ratio_is_one():
    """fp32, the tiny model: the logprobs `jaxlens.generate` records while sampling (KV cache,
    one token at a time) against the learner's full-sequence recomputation of the same tokens,
    as the PPO ratio of the first epoch: |ratio - 1| < 1e-4 on every response token."""
    config, params, tokenizer = tiny_model()
    policy = sp.ModelPolicy(config, tokenizer, sp.GenerationConfig(max_new_tokens=12))
    prompts = []
    for game in ("tictactoe", "kuhn_poker"):
        env = envs.make(game)
        states = env.init_batch(jax.random.PRNGKey(1), 3)
        prompts += text.render_batch(env, states)
    out = policy.generate(params, prompts, jax.random.PRNGKey(3))
    ids = [np.asarray(policy.encode(p), np.int32) for p in prompts]
    batch = learner.pack(
        ids,
        out.tokens,
        out.logprobs,
        np.ones(len(ids)),
        micro_batch=len(ids),
        pad_id=policy.pad_id,
    )
    mb = jax.tree.map(lambda x: jnp.asarray(x[0]), batch)
    k = batch.response_width
    lp = jaxlens.token_logprobs(params, mb.tokens, config=config, attention_mask=mb.mask, last=k)
    w = np.asarray(mb.response[:, -k:]) > 0
    ratio = np.exp(np.asarray(lp) - np.asarray(mb.old_logprobs[:, -k:]))[w]
    assert w.sum() == sum(len(t) for t in out.tokens) > len(ids)
    assert np.abs(ratio - 1).max() < 1e-4, np.abs(ratio - 1).max()  # measured: 5e-7


def test_nonzero_fill_plays_on_until_the_batch_is_full(monkeypatch):
    """SPIRAL keeps playing until `samples_per_step` non-zero-advantage samples are held: here
    every collection holds one drawn game (4 zero-advantage turns) and one won game (4 turns),
    so 10 non-zero samples take three collections, each asked for what is still missing."""
    calls = []

    def collect(policy, params, key, *, config, min_samples, opponent_params):
        calls.append((min_samples, tuple(np.asarray(key).tolist())))
        return _rollout([(0.0, 0.0), (1.0, -1.0)])

    monkeypatch.setattr(rollout, "collect", collect)
    key = jax.random.PRNGKey(0)
    once = sp.SpiralConfig(samples_per_step=10, baseline="none", batch_fill="once")
    roll, adv, _ = train.collect_batch(None, None, key, {}, once, None)
    assert (len(calls), np.count_nonzero(adv), len(roll.samples)) == (1, 4, 8)
    calls.clear()
    full = sp.SpiralConfig(samples_per_step=10, baseline="none")
    roll, adv, _ = train.collect_batch(None, None, key, {}, full, None)
    assert [n for n, _ in calls] == [10, 6, 2] and len({k for _, k in calls}) == 3
    assert np.count_nonzero(adv) == 12 and len(roll.samples) == len(adv) == 24
    assert [e.samples for e in roll.episodes][-1] == tuple(range(20, 24))  # indices shifted
    assert {s.episode for s in roll.samples[20:]} == {5}
