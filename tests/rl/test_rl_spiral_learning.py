"""Self-play learning on the built-in model (CPU): the win rate against the random opponent
rises on TicTacToe and on Kuhn Poker, by a one-sided two-proportion z-test.

One test per game. For each seed, a self-play run of that game from the built-in weights with
the recipe docs/spiral.md measured (128 turn samples a step, 32 games side by side, lr 1e-4, one
PPO epoch, a KL term of 0.05 to the start model, 50 steps); `EVAL_GAMES` evaluation games are
played before and after (the same evaluation keys both times); the test pools the seeds and asks
for z >= 1.645 (one-sided 5%). The same run without RAE (`baseline="none"`, the paper's collapse
ablation) is measured alongside when `SPIRAL_ABLATION=1` and printed, not asserted. Sizes can be
changed through the environment (`SPIRAL_SEEDS`, `SPIRAL_STEPS`, `SPIRAL_EVAL_GAMES`). At the
defaults TicTacToe takes about 35 minutes a seed on two CPU cores and Kuhn Poker about an hour,
which is why they carry the `e2e` marker and CI leaves them out. Kuhn Poker is an expected
failure: the built-in model starts above the Nash player's win rate against random, and
self-play leads toward Nash play (its strategy tables are in docs/spiral.md).
"""

import math
import os
from pathlib import Path

import jax
import numpy as np
import pytest

import jaxlens
import rl.selfplay as sp
from rl.selfplay import evaluate, train

BUILTIN = getattr(jaxlens, "BUILTIN_MODEL", None)
_CARD = Path(str(BUILTIN)) / "README.md"
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        BUILTIN is None
        or not Path(BUILTIN).is_dir()
        or (_CARD.is_file() and "training in progress" in _CARD.read_text()),
        reason="the built-in model (jaxlens.BUILTIN_MODEL) is not in this installation yet "
        "(or its directory holds a snapshot of a training still in progress)",
    ),
]
SEEDS = [int(s) for s in os.environ.get("SPIRAL_SEEDS", "2,3").split(",")]
STEPS = int(os.environ.get("SPIRAL_STEPS", "50"))
EVAL_GAMES = int(os.environ.get("SPIRAL_EVAL_GAMES", "500"))  # per game and seed
EVAL_SLOTS = 50
GENERATION = sp.GenerationConfig(max_new_tokens=48)  # sampling at temperature 1.0


def z_one_sided(wins_a, n_a, wins_b, n_b):
    """z of H1: p_b > p_a (pooled two-proportion test)."""
    p = (wins_a + wins_b) / (n_a + n_b)
    se = math.sqrt(max(p * (1 - p) * (1 / n_a + 1 / n_b), 1e-12))
    return (wins_b / n_b - wins_a / n_a) / se


def _wins(policy, params, game, key):
    """(wins, games) of `params` against the random player; both seats, `EVAL_GAMES` games."""
    rows = evaluate.evaluate(
        policy,
        params,
        key,
        opponent="random",
        games=(game,),
        slots=EVAL_SLOTS,
        games_per_slot=max(EVAL_GAMES // EVAL_SLOTS, 1),
        sampling=None,  # the training sampling (1.0), as the recorded figures were measured
    )
    (row,) = [r for r in rows if r["role"] == "all"]
    return row["win"] * row["n"], row["n"]


def recipe(game, seed, baseline="role"):
    """The self-play run docs/spiral.md reports for the built-in model."""
    return sp.SpiralConfig(
        steps=STEPS,
        samples_per_step=128,
        rollout=sp.RolloutConfig(games=(game,), slots=32),
        generation=GENERATION,
        ppo=sp.PPOConfig(
            lr=1e-4, epochs=1, kl_coef=0.05, micro_batch=32, normalize="batch_constant"
        ),
        sample_draw="first",
        batch_fill="once",
        baseline=baseline,
        seed=seed,
        eval_every=0,
        checkpoint_every=0,
    )


def _train(policy, params, game, seed, baseline, tmp_path):
    cfg = recipe(game, seed, baseline)
    run_dir = tmp_path / f"{game}-{baseline}{seed}"
    state, _, _ = train.train(policy, params, cfg, checkpoint_dir=run_dir)
    return sp.learner.compute_params(state.learner.params, cfg.ppo)


# The start already wins more against random (0.531 exact, from its strategy table) than the
# Nash player does (0.508): self-play moves it toward equilibrium play (fewer bluffs), which
# against random is worth less. docs/spiral.md has the tables.
KUHN_NOT_YET = pytest.mark.xfail(
    reason="Kuhn Poker: the built-in model starts above the Nash player's win rate against "
    "random; 50 steps of this recipe gave 0.510 -> 0.498 and 0.502 (seeds 3, 4) on 600 games "
    "(docs/spiral.md)",
    strict=False,
)


@pytest.mark.parametrize("game", ["tictactoe", pytest.param("kuhn_poker", marks=KUHN_NOT_YET)])
def test_self_play_beats_the_starting_model_against_random(game, tmp_path):
    model = jaxlens.load_model(BUILTIN, dtype="float32")
    policy, params = sp.ModelPolicy.of(model, GENERATION), model.params
    totals = np.zeros(4)  # wins before, n before, wins after, n after
    ablation = np.zeros(2)
    for seed in SEEDS:
        key = jax.random.PRNGKey(1000 + seed)
        before = _wins(policy, params, game, key)
        after = _wins(policy, _train(policy, params, game, seed, "role", tmp_path), game, key)
        totals += [*before, *after]
        if os.environ.get("SPIRAL_ABLATION") == "1":
            trained = _train(policy, params, game, seed, "none", tmp_path)
            ablation += _wins(policy, trained, game, key)
    wb, nb, wa, na = totals
    z = z_one_sided(wb, nb, wa, na)
    extra = f", without RAE {ablation[0] / ablation[1]:.3f}" if ablation[1] else ""
    print(f"{game}: win vs random {wb / nb:.3f} -> {wa / na:.3f} (n={int(nb)}, z={z:.2f}{extra})")
    assert z >= 1.645, f"{game}: win rate {wb / nb:.3f} -> {wa / na:.3f}, z={z:.2f} < 1.645"
