"""Kill-and-resume: a run stopped by SIGTERM at a step boundary, or killed by SIGKILL in the
middle of a step, and resumed equals the uninterrupted run; the study entry point
(`rl.selfplay.run_study`) resumes from its own run folder."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest
from _spiral_model import save_tiny, tiny_model

import jaxlens
import rl.selfplay as sp
import rl.styles
from rl.selfplay import train


def _cfg():
    return sp.SpiralConfig(
        steps=3,
        samples_per_step=8,
        rollout=sp.RolloutConfig(
            games=("tictactoe", "kuhn_poker"), slots=6
        ),  # 6 + 6 finished > 8: draws
        generation=sp.GenerationConfig(max_new_tokens=6),
        ppo=sp.PPOConfig(lr=1e-3, epochs=2, micro_batch=4, normalize="token_mean"),
        eval_every=0,
        checkpoint_every=0,
    )


@pytest.fixture(scope="module")
def policy():
    config, params, tokenizer = tiny_model()
    return sp.ModelPolicy(config, tokenizer, _cfg().generation), params


@pytest.fixture(scope="module")
def full_run(policy, tmp_path_factory):
    """The uninterrupted run: (final state, baselines, step records)."""
    pol, params = policy
    records = []
    out = train.train(
        pol, params, _cfg(), checkpoint_dir=tmp_path_factory.mktemp("full"), log=records.append
    )
    return out[0], out[1], records


def _assert_same_run(a, b, base_a, base_b):
    assert int(a.step) == int(b.step) and base_a == pytest.approx(base_b) and base_a
    np.testing.assert_array_equal(np.asarray(a.key), np.asarray(b.key))
    for x, y in zip(jax.tree.leaves(a.learner), jax.tree.leaves(b.learner), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_sigterm_then_resume_equals_uninterrupted_run(policy, full_run, tmp_path):
    pol, params = policy
    cfg = _cfg()
    full, base_full, records = full_run
    # the runs draw their samples: more non-zero advantages than samples_per_step in some step
    assert any(r["samples"] * (1 - r["zero_adv_frac"]) > r["trained_samples"] for r in records)

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
    _assert_same_run(resumed, full, base_resumed, base_full)
    # and training changed the params
    moved = [
        float(np.abs(np.asarray(a) - np.asarray(b)).max())
        for a, b in zip(jax.tree.leaves(full.learner.params), jax.tree.leaves(params), strict=True)
    ]
    assert max(moved) > 0


KILLED = textwrap.dedent(
    """
    import dataclasses, os, signal, sys
    sys.path.insert(0, sys.argv[2])
    from _spiral_model import tiny_model
    from test_rl_spiral_resume import _cfg
    import rl.selfplay as sp
    from rl.selfplay import train

    config, params, tokenizer = tiny_model()
    cfg = dataclasses.replace(_cfg(), checkpoint_every=1)
    policy = sp.ModelPolicy(config, tokenizer, cfg.generation)
    generate, seen = policy.generate_ids, {"step": 0, "calls": 0}

    def generate_ids(*args, **kwargs):  # the second generate call of step 2: killed
        seen["calls"] += seen["step"] == 1
        if seen["calls"] == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        return generate(*args, **kwargs)

    policy.generate_ids = generate_ids
    on_step = lambda step: seen.__setitem__("step", step)
    train.train(policy, params, cfg, checkpoint_dir=sys.argv[1], on_step=on_step)
    """
)


def test_sigkill_in_a_step_then_resume_equals_uninterrupted_run(policy, full_run, tmp_path):
    """A process killed (SIGKILL: no handler runs) while generating in step 2, with a checkpoint
    after step 1, resumes from step 1 and ends where the uninterrupted run ends."""
    here = str(Path(__file__).parent)
    proc = subprocess.run(
        [sys.executable, "-c", KILLED, str(tmp_path / "ckpt"), here],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    pol, params = policy
    cfg = dataclasses.replace(_cfg(), checkpoint_every=1)
    steps = []
    resumed, base, _ = train.train(
        pol, params, cfg, checkpoint_dir=tmp_path / "ckpt", on_step=steps.append
    )
    assert steps == [2, 3]  # resumed from the checkpoint of step 1
    full, base_full, _ = full_run
    _assert_same_run(resumed, full, base, base_full)


def test_run_study_writes_its_folder_and_resumes(tmp_path):
    model = save_tiny(tmp_path / "model")
    cfg = sp.SpiralConfig(
        steps=1,
        samples_per_step=4,
        rollout=sp.RolloutConfig(games=("tictactoe",), slots=2),
        generation=sp.GenerationConfig(max_new_tokens=4),
        ppo=sp.PPOConfig(lr=1e-3, epochs=1, micro_batch=4, normalize="token_mean"),
        eval_every=0,
        eval_opponents=("random",),
        eval_games_per_slot=1,
        checkpoint_every=0,
    )
    out = tmp_path / "run"
    head = sp.run_study(model, out, config=cfg, command=["test"])
    assert head["steps"] == 1 and set(head["win_vs_random"]) == {"tictactoe"}
    assert head["games"] == {"tictactoe": 2}  # the trained policy against its start
    for name in ("config.json", "evals.json", "report.md", "policy/config.json"):
        assert (out / name).is_file(), name
    # a checkpoint other than the built-in model plays in SPIRAL's prompt style, recorded in
    # the run's config and beside the exported policy (which evaluates in it by default)
    assert json.loads((out / "config.json").read_text())["config"]["prompt_style"] == "spiral"
    assert rl.styles.default_style(out / "policy") == "spiral"
    again = sp.run_study(model, out, config=cfg, steps=2, command=["test"])
    assert again["steps"] == 2
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2  # step 1 kept, step 2 added
