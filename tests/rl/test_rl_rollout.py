"""Rollout bookkeeping on scripted replies: roles, turn order across Kuhn rounds, invalid-move
endings and their penalties, seat alternation against opponents, in-place resets."""

import re

import jax
import numpy as np
import pytest

import rl.envs as E
from rl.envs import kuhn_poker
from rl.selfplay import evaluate
from rl.selfplay import rollout as ro
from rl.selfplay.policy import Replies


class Scripted:
    """A stand-in for the model: `reply(prompt) -> text`, tokens are the text's bytes."""

    pad_id = 0

    def __init__(self, reply):
        self.reply = reply
        self.calls = []

    def encode(self, prompt):
        return list(prompt.encode()[-8:])

    def generate(self, params, prompts, key, *, rows=None):
        assert rows is None or len(prompts) <= rows
        self.calls.append(len(prompts))
        texts = [self.reply(p) for p in prompts]
        toks = [np.frombuffer(t.encode(), np.uint8).astype(np.int32) for t in texts]
        return Replies(texts, toks, [np.zeros(len(t), np.float32) for t in toks], 0.0)


def legal(prompt):
    return re.search(r"Legal moves: (.*)\.\n", prompt).group(1).split(", ")


def first_legal(prompt):
    return f"I play it. \\boxed{{{legal(prompt)[0]}}}"


def test_kuhn_turn_order_across_rounds_and_roles():
    # every player checks (or calls): each round is opener, responder; round r opens with 1 - r%2
    policy = Scripted(first_legal)
    cfg = ro.RolloutConfig(games=("kuhn_poker",), slots=2)
    out = ro.collect(policy, None, jax.random.PRNGKey(0), config=cfg, episodes_per_slot=1)
    assert len(out.episodes) == 2
    for ep in out.episodes:
        roles = [out.samples[i].role for i in ep.samples]
        turns = [out.samples[i].turn for i in ep.samples]
        assert roles == [1, 0, 0, 1, 1, 0, 0, 1, 1, 0]
        assert turns == list(range(10)) and ep.moves == 10
        assert ep.invalid_seat == -1 and ep.model_seats == (0, 1)
        assert sum(ep.returns) == 0 and abs(ep.returns[0]) in (0.0, 1.0)
        assert all(out.samples[i].valid and out.samples[i].game == "kuhn_poker" for i in ep.samples)


def test_invalid_replies_end_the_game_with_each_convention():
    # TicTacToe: player 0 takes [4]; player 1 also answers [4] (taken): format check fails
    def reply(prompt):
        return "\\boxed{[4]}"

    for convention, want in (("spiral", (0.5, -1.5)), ("eval", (1.0, -1.0)), ("env", (0.0, -1.0))):
        cfg = ro.RolloutConfig(games=("tictactoe",), slots=1, convention=convention)
        out = ro.collect(
            Scripted(reply), None, jax.random.PRNGKey(1), config=cfg, episodes_per_slot=1
        )
        (ep,) = out.episodes
        assert ep.returns == want and ep.invalid_seat == 1 and ep.moves == 2, convention
        assert [s.valid for s in out.samples] == [True, False]
    # no \boxed{} at all fails the format check at once
    cfg = ro.RolloutConfig(games=("tictactoe",), slots=1)
    out = ro.collect(
        Scripted(lambda p: "cell 4"), None, jax.random.PRNGKey(1), config=cfg, episodes_per_slot=1
    )
    assert out.episodes[0].returns == (-1.5, 0.5) and out.episodes[0].invalid_seat == 0
    # Negotiation: a well-formed offer of goods the mover lacks passes the format check; the
    # env rejects it with its own -1 / 0
    cfg = ro.RolloutConfig(games=("negotiation",), slots=1)
    out = ro.collect(
        Scripted(lambda p: "\\boxed{[Offer: 50 Wood -> 1 Gold]}"),
        None,
        jax.random.PRNGKey(1),
        config=cfg,
        episodes_per_slot=1,
    )
    assert out.episodes[0].returns == (-1.0, 0.0) and out.episodes[0].invalid_seat == 0


def test_seats_alternate_against_an_opponent_and_slots_reset_in_place():
    policy = Scripted(first_legal)
    cfg = ro.RolloutConfig(games=("tictactoe", "kuhn_poker"), slots=4, opponent="random")
    out = ro.collect(policy, None, jax.random.PRNGKey(2), config=cfg, episodes_per_slot=3)
    assert len(out.episodes) == 12  # every slot played exactly 3 games, reset in place
    seats = {}
    for ep in out.episodes:
        (seat,) = ep.model_seats
        seats.setdefault(ep.game, []).append(seat)
        assert all(out.samples[i].role == seat for i in ep.samples)
        assert 0 < len(ep.samples) <= ep.moves
    for game, s in seats.items():
        assert s.count(0) == s.count(1), game
    assert max(policy.calls) <= cfg.slots


def test_min_samples_keeps_only_finished_games():
    policy = Scripted(first_legal)
    cfg = ro.RolloutConfig(games=("tictactoe", "negotiation"), slots=2)
    out = ro.collect(policy, None, jax.random.PRNGKey(3), config=cfg, min_samples=25)
    assert len(out.samples) >= 25
    assert sorted(i for ep in out.episodes for i in ep.samples) == list(range(len(out.samples)))
    for ep in out.episodes:
        assert [out.samples[i].turn for i in ep.samples] == list(range(ep.moves))


def test_bad_settings():
    with pytest.raises(ValueError, match="opponent"):
        ro.RolloutConfig(opponent="human")
    with pytest.raises(ValueError, match="games"):
        ro.RolloutConfig(games=("chess",))
    with pytest.raises(ValueError, match="exactly one"):
        ro.collect(Scripted(first_legal), None, jax.random.PRNGKey(0), config=ro.RolloutConfig())
    with pytest.raises(ValueError, match="env_options"):
        ro.RolloutConfig(games=("tictactoe",), env_options={"kuhn_poker": {"rounds": 3}})
    with pytest.raises(ValueError, match="variant"):
        ro.RolloutConfig(env_options={"kuhn_poker": {"variant": "poker"}})
    cfg = ro.RolloutConfig(env_options=E.parse_options(["kuhn.variant=spiral_v1", "kuhn.rounds=3"]))
    assert cfg.make_env("kuhn_poker") == E.make("kuhn_poker", variant="spiral_v1", rounds=3)
    with pytest.raises(ValueError, match="GAME.OPTION=VALUE"):
        E.parse_options(["kuhn_poker=spiral_v1"])


def test_evaluation_summary_counts_the_policys_own_replies():
    # The policy plays the first free cell on its first move and a taken cell on its second:
    # each game is one legal and one illegal reply of its own, whatever the random opponent did.
    def reply(prompt):
        board = prompt.split("Board:")[1].split("It is")[0]
        free = legal(prompt)
        if len(re.findall(r"[OX]", board)) <= 1:
            return f"\\boxed{{{free[0]}}}"
        taken = next(c for c in range(9) if f"[{c}]" not in free)
        return f"\\boxed{{[{taken}]}}"

    cfg = ro.RolloutConfig(games=("tictactoe",), slots=2, opponent="random", convention="eval")
    out = ro.collect(Scripted(reply), None, jax.random.PRNGKey(3), config=cfg, episodes_per_slot=2)
    (row,) = [r for r in evaluate.summarize(out) if r["role"] == "all"]
    assert row["n"] == 4 and row["invalid"] == 1.0
    assert row["replies"] == 8 and row["illegal_replies"] == 0.5
    assert row["moves"] > 2  # both seats' moves: not the denominator of the illegal rate


def test_kuhn_strategy_reads_the_table_a_scripted_player_follows():
    """Bet or call exactly with K (and call a bet with Q), and answer nonsense holding J after
    a check-bet: the readout gives that table, with the nonsense counted as illegal."""

    def reply(prompt):
        card = re.search(r"Your card: ([JQK])\.", prompt).group(1)
        moves = legal(prompt)
        if moves == ["[call]", "[fold]"]:
            if card == "J" and "checked" in prompt:
                return "no idea"
            return f"\\boxed{{{'[call]' if card in 'QK' else '[fold]'}}}"
        return f"\\boxed{{{'[bet]' if card == 'K' else '[check]'}}}"

    policy = Scripted(reply)
    out = evaluate.read_strategy(policy, None, jax.random.key(0), game="kuhn_poker", samples=3)
    expected = np.array([[0, 0, 1], [0, 0, 1], [0, 1, 1], [0.5, 1, 1]])  # START, C, B, CB x J Q K
    np.testing.assert_array_equal(out["table"], expected)
    np.testing.assert_array_equal(out["illegal"], np.eye(4)[3][:, None] * [1, 0, 0])
    assert policy.calls == [9, 9, 9, 9]  # one batch a node: 3 cards x 3 samples
    report = kuhn_poker.strategy.worth(out["table"])
    assert 0 < report["exploitability"] < 0.46 and 0 < report["win_vs_random"] < 1
    with pytest.raises(ro.RolloutError, match="samples"):
        evaluate.read_strategy(policy, None, jax.random.key(0), game="kuhn_poker", samples=0)
