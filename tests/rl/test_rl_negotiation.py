"""Scripted Simple Negotiation traces: every rule of docs/games.md."""

import numpy as np
import pytest

import rl.envs as E
from rl.envs import negotiation as N
from rl.envs.negotiation import ACCEPT, DENY, R_ACCEPT, TALK, encode

ENV = E.make("negotiation")


def offer(give, want, response=N.R_NONE):
    return encode(response, give, want)


def inv(state):
    return np.asarray(state.inventory).tolist()


def test_start_position():
    s = ENV.init(None)
    assert inv(s) == [[10, 10], [10, 10]]
    assert int(s.current_player) == 0 and int(s.offer_from) == -1
    assert np.asarray(N.gains(s.inventory)).tolist() == [0, 0]


def test_accept_swaps_the_goods(play):
    states = play(ENV, [offer((3, 0), (0, 2)), ACCEPT])
    made, done = states[1], states[2]
    assert int(made.offer_from) == 0 and inv(made) == [[10, 10], [10, 10]]
    assert inv(done) == [[7, 12], [13, 8]]
    assert int(done.offer_from) == -1
    assert int(done.events[1]) & N.E_TRADE
    # gains: P0 7*5 + 12*15 - 200 = 15; P1 13*15 + 8*5 - 200 = 35
    assert np.asarray(N.gains(done.inventory)).tolist() == [15, 35]


def test_deny_clears_and_talk_keeps_the_offer(play):
    o = offer((1, 0), (0, 1))
    denied = play(ENV, [o, DENY])[-1]
    assert int(denied.offer_from) == -1
    kept = play(ENV, [o, TALK])[-1]
    assert int(kept.offer_from) == 0
    # after a deny there is nothing to accept: [Accept] changes nothing and is legal
    after = play(ENV, [o, DENY, ACCEPT])[-1]
    assert not bool(after.terminated) and inv(after) == [[10, 10], [10, 10]]


def test_counter_offer_replaces_the_pending_one(play):
    states = play(ENV, [offer((1, 0), (0, 1)), offer((0, 2), (4, 0)), ACCEPT])
    countered = states[2]
    assert int(countered.offer_from) == 1
    assert np.asarray(countered.offer_give).tolist() == [0, 2]
    assert np.asarray(countered.offer_want).tolist() == [4, 0]
    assert inv(states[3]) == [[6, 12], [14, 8]]  # P0 accepted P1's counter


def test_accept_and_offer_in_one_move_trade_first(play):
    # P1 accepts 10 Wood for 1 Gold, then offers the 20 Wood it now holds.
    states = play(ENV, [offer((10, 0), (0, 1)), encode(R_ACCEPT, (20, 0), (0, 1))])
    end = states[-1]
    assert not bool(end.terminated)
    assert inv(end) == [[0, 11], [20, 9]]
    assert int(end.offer_from) == 1
    # without the trade the same offer would be giving what P1 does not hold
    p1_to_move = states[0].replace(current_player=np.int32(1))
    assert int(ENV.check(p1_to_move, encode(N.R_NONE, (20, 0), (0, 1)))) == N.GIVER_LACKS


def test_acceptor_lacking_the_price_is_an_invalid_move(play):
    states = play(ENV, [offer((1, 0), (0, 11)), ACCEPT])
    end = states[-1]
    assert int(ENV.check(states[1], ACCEPT)) == N.ACCEPTOR_LACKS
    assert bool(end.terminated) and np.asarray(end.rewards).tolist() == [0.0, -1.0]
    assert not bool(states[1].legal_action_mask[R_ACCEPT])


def test_proposer_lacking_the_goods_cancels_without_penalty(play):
    # With one pending offer at a time the proposer cannot lose the goods by rule-following
    # play in SPIRAL's 10-10 start, so the state is edited: P0 offered 10 Gold, now holds 5.
    state = play(ENV, [offer((0, 10), (1, 0))])[-1]
    state = state.replace(inventory=np.array([[10, 5], [10, 10]], np.int32))
    end = play(ENV, [ACCEPT], state)[-1]
    assert not bool(end.terminated) and np.asarray(end.rewards).tolist() == [0.0, 0.0]
    assert inv(end) == [[10, 5], [10, 10]]
    assert int(end.offer_from) == -1 and int(end.events[1]) & N.E_CANCELLED


def test_offering_what_you_do_not_hold_is_invalid(play):
    states = play(ENV, [offer((11, 0), (0, 1))])
    assert int(ENV.check(states[0], offer((11, 0), (0, 1)))) == N.GIVER_LACKS
    assert np.asarray(states[-1].rewards).tolist() == [-1.0, 0.0]
    # a request beyond what the other holds is allowed at offer time
    ok = play(ENV, [offer((1, 0), (0, 50))])[-1]
    assert not bool(ok.terminated)


@pytest.mark.parametrize("give, want", [((0, 0), (1, 0)), ((2, 0), (0, 0))])
def test_one_sided_offer_is_malformed(play, give, want):
    end = play(ENV, [offer(give, want)])[-1]
    assert bool(end.terminated) and np.asarray(end.rewards).tolist() == [-1.0, 0.0]


def test_accept_by_the_wrong_player_is_invalid(play):
    # P0 offers, P1 only talks, P0 "accepts" its own offer.
    states = play(ENV, [offer((1, 0), (0, 1)), TALK, ACCEPT])
    assert int(ENV.check(states[2], ACCEPT)) == N.OWN_OFFER
    assert not bool(states[2].legal_action_mask[R_ACCEPT])
    end = states[-1]
    assert bool(end.terminated) and np.asarray(end.rewards).tolist() == [-1.0, 0.0]


def test_ten_moves_strictly_alternating_then_the_larger_gain_wins(play):
    moves = [offer((1, 0), (0, 1)), ACCEPT] + [TALK] * 8  # P0: 9 W 11 G = +10; P1: 11 W 9 G = +10
    states = play(ENV, moves)
    assert [int(s.current_player) for s in states[:-1]] == [0, 1] * 5
    assert all(not bool(s.terminated) for s in states[:-1])
    end = states[-1]
    assert bool(end.terminated) and int(end.move_count) == 10
    assert np.asarray(N.gains(end.inventory)).tolist() == [10, 10]
    assert np.asarray(end.rewards).tolist() == [0.0, 0.0]  # equal gains: a draw
    moves = [offer((1, 0), (0, 2)), ACCEPT] + [TALK] * 8  # P0 +25, P1 +5
    assert np.asarray(play(ENV, moves)[-1].rewards).tolist() == [1.0, -1.0]
    moves = [TALK, offer((0, 1), (3, 0)), ACCEPT] + [TALK] * 7  # P0 gives 1 G for 3 W: P0 -5
    assert np.asarray(play(ENV, moves)[-1].rewards).tolist() == [-1.0, 1.0]


def test_no_trade_is_a_draw(play):
    end = play(ENV, [TALK] * 10)[-1]
    assert bool(end.terminated) and np.asarray(end.rewards).tolist() == [0.0, 0.0]


def test_moves_option():
    env = E.make("negotiation", moves=4)
    assert env.max_moves == 4
    with pytest.raises(E.EnvError, match="moves"):
        E.make("negotiation", moves=0)


def test_encode_decode_round_trip():
    rng = np.random.default_rng(0)
    for _ in range(200):
        r = int(rng.integers(3))
        q = rng.integers(0, 22, size=4)
        a = encode(r, q[:2], q[2:])
        dr, dg, dw = (np.asarray(x) for x in N.decode(a))
        assert int(dr) == r and dg.tolist() == q[:2].tolist() and dw.tolist() == q[2:].tolist()
    assert encode(N.R_NONE, (1000, 0), (0, 1)) == encode(N.R_NONE, (21, 0), (0, 1))
    with pytest.raises(E.EnvError):
        encode(3)
    with pytest.raises(E.EnvError):
        encode(N.R_NONE, (-1, 0), (0, 1))
