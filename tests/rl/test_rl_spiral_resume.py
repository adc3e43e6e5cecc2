"""Kill-and-resume: a run stopped by SIGTERM and resumed equals the uninterrupted run; the
study entry point (`rl.selfplay.run_study`) resumes from its own run folder."""

import os
import signal

import jax
import numpy as np
import pytest
from _spiral_model import save_tiny, tiny_model

import jaxlens
import rl.selfplay as sp
from rl.selfplay import train


def _cfg():
    return sp.SpiralConfig(
        steps=3,
        samples_per_step=8,
        rollout=sp.RolloutConfig(games=("tictactoe", "kuhn_poker"), slots=4),
        generation=sp.GenerationConfig(max_new_tokens=6),
        ppo=sp.PPOConfig(lr=1e-3, epochs=2, micro_batch=4, normalize="token_mean"),
        eval_every=0,
        checkpoint_every=0,
    )


@pytest.fixture(scope="module")
def policy():
    config, params, tokenizer = tiny_model()
    return sp.ModelPolicy(config, tokenizer, _cfg().generation), params


def test_sigterm_then_resume_equals_uninterrupted_run(policy, tmp_path):
    pol, params = policy
    cfg = _cfg()
    full, base_full, _ = train.train(pol, params, cfg, checkpoint_dir=tmp_path / "a")

    def kill_after_first(step):
        if step == 1:
            os.kill(os.getpid(), signal.SIGTERM)

    stopped, _, _ = train.train(
        pol, params, cfg, checkpoint_dir=tmp_path / "b", on_step=kill_after_first
    )
    assert int(stopped.step) == 1
    bar = jaxlens.runs.progress(total=cfg.steps, desc="resumed", unit="step")
    resumed, base_resumed, _ = train.train(
        pol, params, cfg, checkpoint_dir=tmp_path / "b", progress=bar
    )
    bar.close()
    assert int(resumed.step) == cfg.steps == int(full.step)
    assert (bar.initial, bar.n) == (1, cfg.steps)  # the bar counts on from the restored step
    assert base_resumed == pytest.approx(base_full) and base_full
    np.testing.assert_array_equal(np.asarray(resumed.key), np.asarray(full.key))
    for a, b in zip(jax.tree.leaves(resumed.learner), jax.tree.leaves(full.learner), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # and training changed the params
    moved = [
        float(np.abs(np.asarray(a) - np.asarray(b)).max())
        for a, b in zip(jax.tree.leaves(full.learner.params), jax.tree.leaves(params), strict=True)
    ]
    assert max(moved) > 0


def test_run_study_writes_its_folder_and_resumes(tmp_path):
    model = save_tiny(tmp_path / "model")
    cfg = sp.SpiralConfig(
        steps=1,
        samples_per_step=4,
        rollout=sp.RolloutConfig(games=("tictactoe",), slots=2),
        generation=sp.GenerationConfig(max_new_tokens=4),
        ppo=sp.PPOConfig(lr=1e-3, epochs=1, micro_batch=4, normalize="token_mean"),
        eval_every=0,
        eval_games_per_slot=1,
        checkpoint_every=0,
    )
    out = tmp_path / "run"
    head = sp.run_study(model, out, config=cfg, command=["test"])
    assert head["steps"] == 1 and set(head["win_vs_random"]) == {"tictactoe"}
    assert head["games"] == {"tictactoe": 2}  # the trained policy against its start
    for name in ("config.json", "evals.json", "report.md", "policy/config.json"):
        assert (out / name).is_file(), name
    again = sp.run_study(model, out, config=cfg, steps=2, command=["test"])
    assert again["steps"] == 2
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2  # step 1 kept, step 2 added
