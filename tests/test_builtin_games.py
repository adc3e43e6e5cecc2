"""The built-in model plays the three games legally but far from optimally.

Sampled at temperature 1.0 (SPIRAL's rollout setting) against the random opponent, at least 95%
of its replies in every game must parse to a legal move, and its win rate must sit clearly below
the optimal player's against the same opponent: self-play then has something to learn.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

import jaxlens
import rl.envs as envs
from rl.selfplay import evaluate, policy, rollout

MODEL = jaxlens.BUILTIN_MODEL
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not (MODEL / "model.safetensors").exists(),
        reason=f"no built-in model at {MODEL}: run scripts/train_builtin.py",
    ),
]
GAMES = ("tictactoe", "kuhn_poker", "negotiation")
# Slots go round-robin over the games: 27 / 27 / 24 games, ~80-160 of the policy's replies per
# game (a 95% rule needs that many: 2 illegal of 27 replies is already 7%); seats alternate.
SLOTS, PER_SLOT = 26, 3


def _optimal_win_rate(game: str, n: int, seed: int) -> float:
    """Win rate of the fixed optimal player against random over `n` games in each seat."""
    env = rollout.make_env(game)
    optimal, rand = rollout.fixed_policy(env, "optimal"), rollout.fixed_policy(env, "random")
    wins = []
    for seat, pair in enumerate(((optimal, rand), (rand, optimal))):
        out = envs.rollout(env, pair, jax.random.key(seed + seat), batch=n)
        wins.append(np.asarray(out.returns)[:, seat] > 0)
    return float(np.mean(wins))


@pytest.fixture(scope="module")
def rows():
    config, params = jaxlens.load_hf(MODEL)
    tok = jaxlens.load_tokenizer(MODEL, config=config)
    pol = policy.ModelPolicy(config, tok, policy.GenerationConfig(temperature=1.0))
    return evaluate.evaluate(
        pol, params, jax.random.key(0), opponent="random", slots=SLOTS, games_per_slot=PER_SLOT
    )


# The model wins ~0.5 of its Kuhn Poker games against random, the Nash player ~0.55: 27 games
# cannot separate the two (that needs several hundred).
UNDERPOWERED = pytest.mark.xfail(
    strict=False,
    reason="27 Kuhn Poker games cannot separate a ~0.5 win rate from the Nash player's ~0.55",
)


@pytest.mark.parametrize("game", GAMES)
def test_replies_are_legal_moves(rows, game):
    row = next(r for r in rows if r["game"] == game and r["role"] == "all")
    print(f"{game}: {row}")
    rate = row["illegal_replies"]
    assert rate <= 0.05, f"{game}: {rate:.1%} of {row['replies']} replies were not legal moves"


@pytest.mark.parametrize("game", ["tictactoe", pytest.param("kuhn_poker", marks=UNDERPOWERED)])
def test_room_to_learn(rows, game):
    row = next(r for r in rows if r["game"] == game and r["role"] == "all")
    best = _optimal_win_rate(game, 256, seed=1)
    # One-sided: the model's wins over n games against the optimal player's rate, 2 sigma apart.
    n = row["n"]
    sigma = np.sqrt(best * (1 - best) / n + row["win"] * (1 - row["win"]) / n)
    print(f"{game}: model wins {row['win']:.2f} vs random, optimal {best:.2f}")
    assert row["win"] < best - 2 * sigma, (game, row["win"], best)
