"""Scripted Kuhn Poker traces: every terminal line of the tree, openers, all three variants."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rl.envs as E
from rl.envs.kuhn_poker import BET, CALL, CHECK, FOLD

# terminal line -> (actions, who wins: "cards" | "opener" | "responder", pot raised by bets)
LINES = {
    "check check": ([CHECK, CHECK], "cards", False),
    "bet call": ([BET, CALL], "cards", True),
    "bet fold": ([BET, FOLD], "opener", False),
    "check bet call": ([CHECK, BET, CALL], "cards", True),
    "check bet fold": ([CHECK, BET, FOLD], "responder", False),
}
DEALS = [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)]
VARIANTS = ("standard", "spiral_v1", "textarena")


def _with_cards(env, jitted, cards):
    state = jitted(env, "init")(jax.random.key(0))
    return state.replace(cards=jnp.asarray(cards, jnp.int8))


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("line", sorted(LINES))
def test_every_terminal_line_of_one_round(play, jitted, variant, line):
    env = E.make("kuhn_poker", variant=variant, rounds=1)
    actions, rule, raised = LINES[line]
    opener = 1  # round 1 is opened by player 1
    for deal in DEALS:
        states = play(env, actions, _with_cards(env, jitted, [deal]))
        movers = [int(s.current_player) for s in states[:-1]]
        assert movers == [opener, 1 - opener, opener][: len(actions)]
        winner = {
            "cards": int(np.argmax(deal)),
            "opener": opener,
            "responder": 1 - opener,
        }[rule]
        amount = 2 if raised and variant == "standard" else 1
        end = states[-1]
        assert bool(end.terminated) and all(not bool(s.terminated) for s in states[:-1])
        expect_chips = [amount if p == winner else -amount for p in (0, 1)]
        assert np.asarray(end.chips).tolist() == expect_chips, (deal, line)
        sign = 1.0 if winner == 0 else -1.0
        assert np.asarray(end.rewards).tolist() == [sign, -sign]


def test_openers_alternate_and_a_player_can_act_twice(play, jitted):
    env = E.make("kuhn_poker")
    state = _with_cards(env, jitted, [(2, 0)] * 5)
    # round 1: P1 bets, P0 calls; round 2 is opened by P0, who acts again at once.
    states = play(env, [BET, CALL, CHECK, CHECK, CHECK, CHECK, BET, FOLD, CHECK, BET, CALL], state)
    movers = [int(s.current_player) for s in states[:-1]]
    assert movers == [1, 0, 0, 1, 1, 0, 0, 1, 1, 0, 1]
    assert [int(s.round) for s in states] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 4, 5]
    # openers by round: 1, 0, 1, 0, 1
    starts = [states[i] for i in (0, 2, 4, 6, 8)]
    assert [int(s.current_player) for s in starts] == [1, 0, 1, 0, 1]
    assert bool(states[-1].terminated)


def _five_rounds(winners):
    """Cards and actions (check-check showdowns) so that round r is won by winners[r]."""
    cards = [(2, 0) if w == 0 else (0, 2) for w in winners]
    return cards, [CHECK, CHECK] * len(winners)


@pytest.mark.parametrize("variant", VARIANTS)
def test_round_five_decides_only_under_spiral_v1(play, jitted, variant):
    env = E.make("kuhn_poker", variant=variant)
    cards, actions = _five_rounds([0, 0, 0, 0, 1])
    states = play(env, actions, _with_cards(env, jitted, cards))
    end = states[-1]
    assert bool(end.terminated) and int(end.move_count) == 10
    assert np.asarray(end.chips).tolist() == [3, -3]
    expect = [-1.0, 1.0] if variant == "spiral_v1" else [1.0, -1.0]
    assert np.asarray(end.rewards).tolist() == expect
    assert all(not np.any(np.asarray(s.rewards)) for s in states[:-1])


def test_bets_add_chips_only_in_standard(play, jitted):
    # P0 wins round 1 by a called bet; rounds 2-5 are check-check showdowns won by P1, P1,
    # P0, P1.
    winners = [0, 1, 1, 0, 1]
    cards = [(2, 0) if w == 0 else (0, 2) for w in winners]
    actions = [CHECK, BET, CALL] + [CHECK, CHECK] * 4  # round 1: P1 checks, P0 bets, P1 calls
    results = {}
    for variant in VARIANTS:
        env = E.make("kuhn_poker", variant=variant)
        end = play(env, actions, _with_cards(env, jitted, cards))[-1]
        results[variant] = (np.asarray(end.chips).tolist(), np.asarray(end.rewards).tolist())
    assert results["standard"] == ([0, 0], [0.0, 0.0])  # 2 - 1 - 1 + 1 - 1 = 0: a draw
    assert results["textarena"] == ([-1, 1], [-1.0, 1.0])  # 1 - 1 - 1 + 1 - 1
    assert results["spiral_v1"] == ([-1, 1], [-1.0, 1.0])  # round 5 went to P1


@pytest.mark.parametrize(
    "prefix, bad",
    [([], [CALL, FOLD]), ([CHECK], [CALL, FOLD]), ([BET], [CHECK, BET]),
     ([CHECK, BET], [CHECK, BET])],
)  # fmt: skip
def test_illegal_actions_at_each_node(play, jitted, prefix, bad):
    env = E.make("kuhn_poker")
    for action in bad + [4, -1]:
        states = play(env, prefix + [action])
        before, end = states[-2], states[-1]
        assert not bool(before.legal_action_mask[action]) if 0 <= action < 4 else True
        assert bool(end.terminated)
        mover = int(before.current_player)
        assert np.asarray(end.rewards).tolist() == [-1.0 if p == mover else 0.0 for p in (0, 1)]


@pytest.mark.parametrize("batched", [False, True])
def test_deals_are_uniform_and_fresh_each_round(batched):
    env = E.make("kuhn_poker")
    if batched:
        cards = np.asarray(jax.jit(env.init_batch, static_argnums=1)(jax.random.key(3), 6000).cards)
    else:
        cards = np.asarray(
            jax.jit(jax.vmap(env.init))(jax.random.split(jax.random.key(3), 6000)).cards
        )
    assert np.all(cards[..., 0] != cards[..., 1])
    codes = cards[..., 0].astype(int) * 3 + cards[..., 1]  # [6000, 5]
    counts = np.array([np.sum(codes == 3 * a + b) for a, b in DEALS])
    assert np.all(np.abs(counts / codes.size - 1 / 6) < 0.01), counts
    # rounds are dealt independently: round 1 and round 2 deals agree ~1/6 of the time
    assert abs(np.mean(codes[:, 0] == codes[:, 1]) - 1 / 6) < 0.02


def test_bad_options_are_rejected():
    with pytest.raises(E.EnvError, match="variant"):
        E.make("kuhn_poker", variant="spiral")
    with pytest.raises(E.EnvError, match="rounds"):
        E.make("kuhn_poker", rounds=0)
    with pytest.raises(E.EnvError, match="no option"):
        E.make("kuhn_poker", rules="x")
    with pytest.raises(E.EnvError, match="unknown env"):
        E.make("poker")
