"""The built-in model plays the three games legally but far from optimally.

Sampled at temperature 1.0 (SPIRAL's rollout setting) against the random opponent, at least 95%
of its replies in every game must parse to a legal move, and its win rate must sit clearly below
the optimal player's against the same opponent: self-play then has something to learn.

The best fixed players against random are minimax in TicTacToe (it never loses and takes
every win random play leaves) and the heuristic trader in Simple Negotiation (~0.96). In Kuhn
Poker the Nash player is not: it guards against an opponent that could exploit it and so wins
only about half its games against random play; the best response to the random player
(`rl.opponents.KuhnBestResponse`) wins about 0.7, the ceiling for a policy that learns to
exploit random play.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

import jaxlens
import rl.envs as envs
from rl import opponents
from rl.selfplay import evaluate, policy

MODEL = jaxlens.BUILTIN_MODEL
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not (MODEL / "model.safetensors").exists(),
        reason=f"no built-in model at {MODEL}: run scripts/train_builtin.py",
    ),
]
GAMES = envs.BUILTIN
# Slots go round-robin over the games: 27 / 27 / 24 games, ~80-160 of the policy's replies per
# game (a 95% rule needs that many: 2 illegal of 27 replies is already 7%); seats alternate.
SLOTS, PER_SLOT = 26, 3
# Kuhn Poker's games are close (5 rounds of +-1 or 2 chips): ~100 games are needed to separate
# the model from the best response, more than the round-robin rows hold.
KUHN_SLOTS, KUHN_PER_SLOT = 32, 3


def _win_rate(env, player, n: int, seed: int) -> float:
    """Win rate of a fixed `player` against random over `n` games in each seat."""
    rand = opponents.fixed_policy(env, "random")
    wins = []
    for seat, pair in enumerate(((player, rand), (rand, player))):
        out = envs.rollout(env, pair, jax.random.key(seed + seat), batch=n)
        wins.append(np.asarray(out.returns)[:, seat] > 0)
    return float(np.mean(wins))


@pytest.fixture(scope="module")
def model():
    model = jaxlens.load_model(MODEL)
    return policy.ModelPolicy.of(model, policy.GenerationConfig(temperature=1.0)), model.params


@pytest.fixture(scope="module")
def rows(model):
    pol, params = model
    return evaluate.evaluate(
        pol, params, jax.random.key(0), opponent="random", slots=SLOTS, games_per_slot=PER_SLOT
    )


@pytest.mark.parametrize("game", GAMES)
def test_replies_are_legal_moves(rows, game):
    row = next(r for r in rows if r["game"] == game and r["role"] == "all")
    print(f"{game}: {row}")
    rate = row["illegal_replies"]
    assert rate <= 0.05, f"{game}: {rate:.1%} of {row['replies']} replies were not legal moves"


def _assert_below(game: str, row: dict, best: float, n_best: int) -> None:
    # One-sided: the model's wins over its n games against the best player's rate, 2 sigma apart.
    n, win = row["n"], row["win"]
    sigma = np.sqrt(best * (1 - best) / n_best + win * (1 - win) / n)
    assert win < best - 2 * sigma, f"{game}: model wins {win:.3f} of {n}, best {best:.3f}"


@pytest.mark.parametrize("game", ["tictactoe", "negotiation"])
def test_room_to_learn(rows, game):
    """Below minimax (TicTacToe) and the heuristic trader (Negotiation) against random."""
    row = next(r for r in rows if r["game"] == game and r["role"] == "all")
    env = envs.make(game)
    best = _win_rate(env, opponents.fixed_policy(env, "optimal"), 1000, seed=1)
    print(f"{game}: model wins {row['win']:.2f} of {row['n']} vs random, optimal {best:.2f}")
    _assert_below(game, row, best, 2 * 1000)


def test_kuhn_poker_room_to_learn(model):
    pol, params = model
    rows = evaluate.evaluate(
        pol,
        params,
        jax.random.key(1),
        opponent="random",
        games=("kuhn_poker",),
        slots=KUHN_SLOTS,
        games_per_slot=KUHN_PER_SLOT,
    )
    row = next(r for r in rows if r["role"] == "all")
    env = envs.make("kuhn_poker")
    best = _win_rate(env, opponents.KuhnBestResponse(), 2000, seed=1)
    nash = _win_rate(env, opponents.KuhnNash(), 2000, seed=1)
    print(
        f"kuhn_poker: model wins {row['win']:.2f} of {row['n']} vs random, "
        f"best response {best:.2f}, Nash {nash:.2f}"
    )
    _assert_below("kuhn_poker", row, best, 2 * 2000)
