"""Fixed opponents: minimax never loses, Kuhn Nash is unexploitable, the Kuhn best response is
best, heuristics are sane."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rl.envs as E
from rl import opponents as O
from rl.envs import kuhn_poker as K

GAMES = 10_000


@pytest.mark.parametrize("seat", [0, 1])
def test_minimax_never_loses_to_random(seat):
    env = E.make("tictactoe")
    pols = [O.RandomLegal(env)] * 2
    pols[seat] = O.Minimax()
    out = E.rollout(env, tuple(pols), jax.random.key(seat), batch=GAMES)
    mine = np.asarray(out.returns)[:, seat]
    assert np.all(np.asarray(out.final.terminated))
    assert mine.min() >= 0.0, f"minimax lost {np.sum(mine < 0)} of {GAMES} games"
    assert mine.mean() > 0.6  # and it mostly wins


def test_minimax_against_itself_always_draws():
    env = E.make("tictactoe")
    out = E.rollout(env, (O.Minimax(), O.Minimax()), jax.random.key(2), batch=512)
    assert np.all(np.asarray(out.returns) == 0.0)


# ---- Kuhn Poker: exact best response in the one-round game (standard payoffs) --------------

CARDS = range(3)
PREFIX = {K.START: [], K.C: [K.CHECK], K.B: [K.BET], K.CB: [K.CHECK, K.BET]}


def strategy(policy, play, jitted):
    """{(node, card): P(bet or call)} read from `policy.probs` on real env states."""
    env = E.make("kuhn_poker", rounds=1)
    out = {}
    for node, prefix in PREFIX.items():
        for deal in itertools.permutations(CARDS, 2):
            state = jitted(env, "init")(jax.random.key(0)).replace(
                cards=jnp.asarray([deal], jnp.int8)
            )
            state = play(env, prefix, state)[-1]
            probs = np.asarray(policy.probs(state))
            assert abs(probs.sum() - 1) < 1e-6 and np.all(probs >= 0)
            card = deal[int(state.current_player)]
            p = probs[K.BET] if node in (K.START, K.C) else probs[K.CALL]
            assert out.setdefault((node, card), p) == pytest.approx(p)  # one value per info set
    return out


def showdown(mine, theirs, stake):
    return stake if mine > theirs else -stake


def best_response_as_responder(s):
    """Expected payoff of the best responder against opener strategy `s` (per deal)."""
    total = 0.0
    for r in CARDS:
        opp = [o for o in CARDS if o != r]
        # info set (r, C): opener checked
        check_then = [showdown(r, o, 1) * (1 - s[K.START, o]) for o in opp]  # responder checks back
        bet_then = [
            (1 - s[K.START, o]) * (s[K.CB, o] * showdown(r, o, 2) + (1 - s[K.CB, o]) * 1)
            for o in opp
        ]
        total += max(sum(check_then), sum(bet_then))
        # info set (r, B): opener bet
        call = sum(s[K.START, o] * showdown(r, o, 2) for o in opp)
        fold = sum(s[K.START, o] * -1 for o in opp)
        total += max(call, fold)
    return total / 6


def best_response_as_opener(s):
    """Expected payoff of the best opener against responder strategy `s` (per deal)."""
    total = 0.0
    for c in CARDS:
        opp = [r for r in CARDS if r != c]
        call_cb = sum(s[K.C, r] * showdown(c, r, 2) for r in opp)
        fold_cb = sum(s[K.C, r] * -1 for r in opp)
        check = sum((1 - s[K.C, r]) * showdown(c, r, 1) for r in opp) + max(call_cb, fold_cb)
        bet = sum(s[K.B, r] * showdown(c, r, 2) + (1 - s[K.B, r]) * 1 for r in opp)
        total += max(check, bet)
    return total / 6


def exploitability(policy, play, jitted):
    s = strategy(policy, play, jitted)
    return best_response_as_opener(s) + best_response_as_responder(s)


@pytest.mark.parametrize("alpha", [0.0, 1 / 6, 1 / 3])
def test_kuhn_nash_is_unexploitable(play, jitted, alpha):
    assert abs(exploitability(O.KuhnNash(alpha), play, jitted)) < 1e-6


class _CallsWithQueen(O.KuhnNash):
    def aggressive(self):
        table = super().aggressive().copy()
        table[K.B, 1] = 1.0  # responder always calls a bet with Q
        return table


def test_exploitability_detects_a_non_equilibrium(play, jitted):
    assert exploitability(_CallsWithQueen(), play, jitted) > 0.01
    # the opener's equilibrium value is -1/18 against the best responder
    s = strategy(O.KuhnNash(1 / 6), play, jitted)
    assert best_response_as_opener(s) == pytest.approx(-1 / 18)


RANDOM = np.full((4, 3), 0.5)


def table(s):
    """`strategy`'s dict as a [4 nodes, 3 cards] table."""
    return np.array([[s[node, card] for card in CARDS] for node in range(4)])


def test_kuhn_round_value_matches_play():
    """The exact one-round value against the mean chips of many played rounds."""
    env = E.make("kuhn_poker", rounds=1)
    for opener, responder in (
        (O.KuhnNash(), O.RandomLegal(env)),
        (O.RandomLegal(env), O.KuhnBestResponse()),
    ):
        # rounds=1: player 1 opens, so the opener's chips are chips[:, 1]
        out = E.rollout(env, (responder, opener), jax.random.key(5), batch=40_000)
        played = np.asarray(out.final.chips)[:, 1].mean()
        tables = [
            RANDOM if isinstance(p, O.RandomLegal) else p.aggressive() for p in (opener, responder)
        ]
        assert O.kuhn_round_value(*tables) == pytest.approx(played, abs=0.03)


def test_kuhn_best_response_beats_every_pure_strategy_against_random(play, jitted):
    best = O.KuhnBestResponse().aggressive()
    # read back from real env states: the policy plays the table it reports
    assert np.array_equal(table(strategy(O.KuhnBestResponse(), play, jitted)), best)
    value = lambda t: O.kuhn_round_value(t, RANDOM) - O.kuhn_round_value(RANDOM, t)
    pure = [((bits >> np.arange(12)) & 1).reshape(4, 3) for bits in range(2**12)]
    assert value(best) == pytest.approx(max(value(t) for t in pure))
    # and it is the best response computed independently, seat by seat
    random_s = {(n, c): 0.5 for n in range(4) for c in CARDS}
    assert O.kuhn_round_value(best, RANDOM) == pytest.approx(best_response_as_opener(random_s))
    assert -O.kuhn_round_value(RANDOM, best) == pytest.approx(best_response_as_responder(random_s))
    assert value(best) > value(O.KuhnNash().aggressive()) + 0.5


def test_kuhn_best_response_to_nash_gets_the_game_value():
    nash = O.KuhnNash().aggressive()
    best = O.kuhn_best_response(nash)
    assert O.kuhn_round_value(best, nash) == pytest.approx(-1 / 18)
    assert O.kuhn_round_value(nash, best) == pytest.approx(-1 / 18)


def test_kuhn_round_outcomes_are_a_distribution_with_the_round_value_as_mean():
    nash, best = O.KuhnNash().aggressive(), O.KuhnBestResponse().aggressive()
    for opener, responder in [(nash, RANDOM), (RANDOM, best), (best, nash)]:
        dist = O.kuhn_round_outcomes(opener, responder)
        assert set(dist) <= {-2, -1, 1, 2} and sum(dist.values()) == pytest.approx(1.0)
        mean = sum(c * p for c, p in dist.items())
        assert mean == pytest.approx(O.kuhn_round_value(opener, responder))
    # pot stays 2 (spiral_v1 / textarena chips): every round moves exactly 1 chip
    assert set(O.kuhn_round_outcomes(nash, RANDOM, bets_add_chips=False)) == {-1, 1}


def test_kuhn_match_outcome_of_one_round_is_the_round_for_its_opener():
    nash = O.KuhnNash().aggressive()
    dist = O.kuhn_round_outcomes(nash, RANDOM)  # player 1 opens the first round
    win, draw, loss = O.kuhn_match_outcome(nash, RANDOM, seat=1, rounds=1)
    assert (win, draw) == (pytest.approx(dist[1] + dist[2]), 0.0)
    assert loss == pytest.approx(dist[-1] + dist[-2])
    with pytest.raises(E.EnvError, match="seat"):
        O.kuhn_match_outcome(nash, RANDOM, seat=2)
    with pytest.raises(E.EnvError, match="rounds"):
        O.kuhn_match_outcome(nash, RANDOM, seat=0, rounds=0)
    with pytest.raises(E.EnvError, match=r"\[4 nodes, 3 cards\].*shape \(3, 4\)"):
        O.kuhn_match_outcome(nash.T, RANDOM, seat=0)
    with pytest.raises(E.EnvError, match=r"kuhn_best_response .* values -0.5 .. -0.5"):
        O.kuhn_exploitability(RANDOM - 1)


@pytest.mark.parametrize("player", [O.KuhnNash(), O.KuhnBestResponse()])
@pytest.mark.parametrize("seat", [0, 1])
def test_kuhn_match_outcome_matches_play(player, seat):
    env = E.make("kuhn_poker")
    pols = [O.RandomLegal(env)] * 2
    pols[seat] = player
    out = E.rollout(env, tuple(pols), jax.random.key(7 + seat), batch=GAMES)
    mine = np.asarray(out.returns)[:, seat]
    exact = O.kuhn_match_outcome(player.aggressive(), RANDOM, seat=seat)
    played = (np.mean(mine > 0), np.mean(mine == 0), np.mean(mine < 0))
    assert played == pytest.approx(exact, abs=0.015), (played, exact)  # 3 standard errors


def test_kuhn_exploitability_is_the_best_responses_gain(play, jitted):
    assert O.kuhn_exploitability(O.KuhnNash(0.25).aggressive()) == pytest.approx(0.0, abs=1e-6)
    for policy in (_CallsWithQueen(), O.KuhnBestResponse()):
        expected = exploitability(policy, play, jitted) / 2  # both seats' best responses, averaged
        assert O.kuhn_exploitability(policy.aggressive()) == pytest.approx(expected)
    assert O.kuhn_exploitability(RANDOM) > O.kuhn_exploitability(_CallsWithQueen().aggressive())


def test_kuhn_nash_samples_its_probabilities(jitted):
    env = E.make("kuhn_poker")
    state = jitted(env, "init")(jax.random.key(0)).replace(
        cards=jnp.full((5, 2), jnp.int8(2)).at[0, 1].set(0)
    )  # P1 opens round 1 holding J: bets with probability alpha
    pol = O.KuhnNash(0.25)
    acts = jax.jit(jax.vmap(pol, (0, None)))(jax.random.split(jax.random.key(1), 20_000), state)
    assert abs(np.mean(np.asarray(acts) == K.BET) - 0.25) < 0.015
    assert set(np.unique(np.asarray(acts)).tolist()) == {K.CHECK, K.BET}
    with pytest.raises(E.EnvError, match="alpha"):
        O.KuhnNash(0.5)


def test_kuhn_nash_beats_random():
    env = E.make("kuhn_poker")
    out = E.rollout(env, (O.KuhnNash(), O.RandomLegal(env)), jax.random.key(3), batch=4096)
    assert np.asarray(out.returns)[:, 0].mean() > 0.05


@pytest.mark.parametrize("seat", [0, 1])
def test_heuristic_negotiator_beats_random_with_legal_moves(seat):
    env = E.make("negotiation")
    pols = [O.RandomLegal(env)] * 2
    pols[seat] = O.HeuristicNegotiator()
    out = E.rollout(env, tuple(pols), jax.random.key(4), batch=2048)
    r = np.asarray(out.returns)
    assert np.all(r.sum(1) == 0), "an invalid move was made"
    assert np.all(np.asarray(out.final.move_count) == env.max_moves)
    assert r[:, seat].mean() > 0.8
