"""Training with the KL term and the frozen start model as evaluation opponent.

Both hold the start policy's params while `learner.update` donates the learner's buffers; they
must be copies, or the second step fails with a deleted buffer.
"""

import jax
import numpy as np
import pytest
from _spiral_model import tiny_model

import rl.selfplay as sp
from rl.selfplay import train


def test_kl_and_model_opponent_survive_donating_updates(tmp_path):
    config, params, tokenizer = tiny_model()
    cfg = sp.SpiralConfig(
        steps=2,
        samples_per_step=8,
        rollout=sp.RolloutConfig(games=("tictactoe",), slots=4),
        generation=sp.GenerationConfig(max_new_tokens=6),
        ppo=sp.PPOConfig(lr=1e-2, epochs=1, micro_batch=4, normalize="token_mean", kl_coef=0.1),
        eval_every=1,
        eval_opponents=("model",),
        eval_games_per_slot=1,
        checkpoint_every=0,
    )
    policy = sp.ModelPolicy(config, tokenizer, cfg.generation)
    records = []
    state, _, evals = train.train(policy, params, cfg, checkpoint_dir=tmp_path, log=records.append)
    assert int(state.step) == 2
    assert sorted({r["step"] for r in evals}) == [1, 2]
    assert {r["opponent"] for r in evals} == {"model"}
    kl = [r["kl_to_start"] for r in records]
    assert kl[0] == pytest.approx(0.0, abs=1e-5)  # step 1 samples from the start params
    assert kl[1] > 1e-6  # the first update moved the policy away from the start
    for leaf in jax.tree.leaves(params):  # the caller's params are untouched
        assert np.isfinite(np.asarray(leaf)).all()
