"""The "spiral" prompt style (`rl.styles`): TextArena 0.7.4's observation text, SPIRAL's check.

Random games are played first in TextArena 0.7.4 alone (a fresh env per game, in the wrapper
SPIRAL uses for it), recording each acting player's observation; the same move texts are then
played through our env with the "spiral" prompter, whose observation must equal the recorded
one at every turn, and in TicTacToe and Kuhn Poker the moves SPIRAL's parser reads from it must
be our legal moves. Kuhn Poker's deals are TextArena's, copied into our state before play.

SPIRAL's own environments (its KuhnPoker-v1 and SimpleNegotiation-v1, written for TextArena
0.6.4) are not TextArena 0.7.4's; where they differ, `SPIRAL_ENV_DIFFERS` says how, and
`test_where_spirals_envs_differ_from_textarena` asserts 0.7.4's side of each statement, so a
TextArena that changes it fails here. Where TextArena 0.7.4's Negotiation rules differ from
SPIRAL's (ours), the style aligns its TextArena env with our state, so the texts part from an
unaligned TextArena: a game's comparison stops there and the reason is counted.
"""

import importlib.metadata
import random
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

ta = pytest.importorskip("textarena", reason="the 'spiral' prompt style needs textarena==0.7.4")
if importlib.metadata.version("textarena") != "0.7.4":
    pytest.skip("these expectations are for textarena 0.7.4", allow_module_level=True)

from textarena.envs.KuhnPoker.env import KuhnPokerEnv  # noqa: E402
from textarena.envs.SimpleNegotiation.env import SimpleNegotiationEnv  # noqa: E402
from textarena.envs.TicTacToe.env import TicTacToeEnv  # noqa: E402
from textarena.wrappers.ObservationWrappers import llm_observation_wrapper as W  # noqa: E402

import jaxlens  # noqa: E402
import rl.envs as E  # noqa: E402
import rl.styles as S  # noqa: E402
import rl.text as T  # noqa: E402
from rl.envs import mirror  # noqa: E402
from rl.envs.batch import tree_where  # noqa: E402
from rl.envs.negotiation import mirror as negotiation_mirror  # noqa: E402
from rl.envs.prompt import rows as host_rows  # noqa: E402
from rl.selfplay import rollout as ro  # noqa: E402
from rl.selfplay import train  # noqa: E402

SPIRAL_ENV_DIFFERS = {
    "tictactoe": [],  # SPIRAL plays TextArena's own TicTacToe-v0
    "kuhn_poker": [
        # (what 0.7.4 says, what SPIRAL's KuhnPoker-v1 says instead)
        ("### Starting round 1 out of 5 rounds. Your card is: '",
         "Starting round 1 out of 5 rounds.\nYour card is: J (no quotes, no ###)"),
        ("Your available actions are: '[", "Your available actions are: [check], [bet] (unquoted)"),
        ("Current scores: Player 0:", "no running score after a round"),
        ("submitted move: '[", "no 'submitted move' message"),
        ("cards are dealt without replacement", "its rules do not say so"),
        # scoring, not wording: SPIRAL's env gives the game to the last round's winner, 0.7.4
        # counts chips (our variants "spiral_v1" and "textarena"); neither adds bets to the pot
    ],
    "negotiation": [
        ("'[Offer: 3 Sheep, 2 Ore -> 5 Brick, 2 Sheep]'", "Example: [Offer: 3 Wood -> 2 Gold]"),
        ("made no new trade offer", "nothing said when a move makes no offer"),
        ("rejected the trade offer", "'Player 1 denied the trade offer from Player 0.', and "
         "'implicitly denied the previous offer by making a counter-offer'"),
        # rules: 0.7.4 keeps a denied offer pending, lets a proposer accept its own offer and
        # makes a trade the proposer can no longer pay; SPIRAL's env (ours) does none of these
        # (the style aligns its TextArena env after each move). SPIRAL's action list looks
        # for "accepted|denied|implicitly denied" after the last offer: 0.7.4's "rejected"
        # leaves an offer it rejected open in that list.
    ],
}  # fmt: skip


def _ta_game(game: str, env):
    """A fresh TextArena 0.7.4 env of `game` in SPIRAL's wrapper, at SPIRAL's start."""
    if game == "tictactoe":
        t = TicTacToeEnv()
    elif game == "kuhn_poker":
        t = KuhnPokerEnv(max_rounds=env.rounds)
    else:
        t = SimpleNegotiationEnv(max_turns=env.moves)
    t.reset(num_players=2)
    t.state.error_allowance = 0
    if game == "negotiation":  # SPIRAL's two resources and fixed start, the prompts reworded
        t.resource_names = ["Wood", "Gold"]
        gs = t.state.game_state
        gs["player_resources"] = {p: {"Wood": 10, "Gold": 10} for p in (0, 1)}
        gs["player_values"] = {0: {"Wood": 5, "Gold": 15}, 1: {"Wood": 15, "Gold": 5}}
        gs["inventory_value"] = {p: {"initial": 200, "current": 200, "change": 0} for p in (0, 1)}
        t.state.observations = {0: [], 1: []}
        for p in (0, 1):
            t.state.add_observation(to_id=p, message=t._prompt(p, gs),
                                    observation_type=ta.ObservationType.PROMPT)  # fmt: skip
    wrapper = W.FirstLastObservationWrapper if game == "tictactoe" else W.LLMObservationWrapper
    return wrapper(t)


def _reply(game: str, t, rng: random.Random) -> str:
    """A random move as text, legal in TextArena (Negotiation: offers, answers and talk)."""
    gs = t.state.game_state
    if game == "tictactoe":
        free = [3 * r + c for r in range(3) for c in range(3) if gs["board"][r][c] == ""]
        return rng.choice(["[{}]", "[ {} ]"]).format(rng.choice(free))
    if game == "kuhn_poker":
        return f"[{rng.choice(list(gs['current_legal_action_tree']))}]"
    me = t.state.current_player_id
    held = gs["player_resources"]

    def side(p):
        q = [rng.randint(0, min(held[p][r], 4)) for r in ("Wood", "Gold")]
        if not any(q):
            q[rng.randrange(2)] = 1
        return ", ".join(f"{n} {r}" for n, r in zip(q, ("Wood", "Gold"), strict=True) if n)

    offer = f"[Offer: {side(me)} -> {side(1 - me)}]"
    talk = "I'm open to negotiation."
    return rng.choice([offer] * 5 + ["[Accept]"] * 3 + [talk] * 2 + ["[Deny]"])


def _record(game: str, env, n: int, seed: int):
    """`n` TextArena games to the end: per game its turns [(player, observation, move)], its
    deals (Kuhn Poker) and pending offers after each move (Negotiation)."""
    rng = random.Random(seed)
    random.seed(seed)  # TextArena deals Kuhn Poker from the global stream
    played = []
    for _ in range(n):
        t, turns, deals, offers = _ta_game(game, env), [], [], []
        done = False
        while not done and len(turns) < env.max_moves:
            if game == "kuhn_poker" and len(deals) < t.state.game_state["current_round"]:
                deals.append(dict(t.state.game_state["player_cards"]))
            player, seen = t.get_observation()
            move = _reply(game, t, rng)
            done, _ = t.step(move)
            offers.append(t.state.game_state.get("current_offer"))
            turns.append((player, seen, move))
        played.append((turns, deals, offers))
    return played


def _spirals_moves(game: str, observation: str):
    """The moves SPIRAL's parser reads from an observation (TicTacToe: the quoted cells after
    "Available Moves:"; Kuhn Poker: the bracketed words of the last line but [GAME])."""
    if game == "tictactoe":
        section = observation.split("Available Moves:")[1].split("Next Action:")[0]
        return [f"[{c}]" for c in re.findall(r"'\[(\d+)\]'", section)]
    if game == "kuhn_poker":
        words = re.findall(r"\[(.*?)\]", observation.strip().split("\n")[-1])
        return [f"[{w}]" for w in words if w != "GAME"]
    return None


def _our_offer(row):
    if row.offer_from < 0:
        return None
    q = [{r: int(x[i]) for i, r in enumerate(("Wood", "Gold")) if x[i]}
         for x in (row.offer_give, row.offer_want)]  # fmt: skip
    return (row.offer_from, q[0], q[1])


def _their_offer(o):
    return (
        None if o is None else (o["from_player"], o["offered_resources"], o["requested_resources"])
    )


@pytest.mark.parametrize(
    ("game", "n"), [("tictactoe", 40), ("kuhn_poker", 25), ("negotiation", 40)]
)
def test_spiral_observations_equal_textarena_074(game, n):
    env = E.make(game, **({"variant": "spiral_v1"} if game == "kuhn_poker" else {}))
    played = _record(game, env, n, seed=7)
    states = jax.vmap(env.init)(jax.random.split(jax.random.key(0), n))
    if game == "kuhn_poker":  # TextArena's deals, into our state
        cards = np.array(states.cards)
        for i, (_, deals, _) in enumerate(played):
            for r, d in enumerate(deals[: env.rounds]):
                cards[i, r] = [d[0], d[1]]
        states = states.replace(cards=jnp.asarray(cards))
    prompter = S.prompter("spiral", env, n)
    prompter.start(states, range(n))
    step = jax.jit(jax.vmap(env.step))
    live = np.ones(n, bool)
    stopped, last, compared = {}, {}, 0  # last: the last turn compared in a stopped game
    for t in range(env.max_moves):
        rows = [i for i in np.flatnonzero(live) if t < len(played[i][0])]
        live[[i for i in range(n) if i not in rows]] = False
        if not rows:
            break
        texts = prompter.render(states, rows)
        for i, text in zip(rows, texts, strict=True):
            player, seen, _ = played[i][0][t]
            assert int(states.current_player[i]) == player
            assert text == S.SPIRAL_TEMPLATE.format(observation=seen), (game, i, t)
            listed = _spirals_moves(game, seen)
            if listed is not None:  # SPIRAL's list of moves is our legal moves
                mask = np.asarray(states.legal_action_mask[i])
                assert set(listed) == {env.action_names[a] for a in np.flatnonzero(mask)}
            compared += 1
        moves = [played[i][0][t][2] if i in rows else "" for i in range(n)]
        parsed = prompter.parse(states, moves, mode="env")
        for i in rows:  # an invalid move (Negotiation) ends the game in both, but one
            if parsed.actions[i] == T.INVALID and t + 1 < len(played[i][0]):
                assert parsed.reasons[i] == env.REASONS[E.negotiation.OWN_OFFER], moves[i]
                stopped[i], last[i] = "0.7.4 lets a proposer accept its own offer", t
        states = tree_where(jnp.asarray(live), step(states, jnp.asarray(parsed.actions)), states)
        host = host_rows(states)
        for i in rows:
            more = t + 1 < len(played[i][0])
            if host[i].terminated and more and t + 1 < env.max_moves:
                assert i in stopped, (game, i, t)  # only the own-offer accept above
            elif more and game == "negotiation" and i not in stopped:
                if _our_offer(host[i]) != _their_offer(played[i][2][t]):
                    # the next observation still agrees; the one after shows the offer
                    stopped[i], last[i] = "0.7.4 keeps a denied offer pending", t + 1
        moved = [i for i in rows if not host[i].terminated and last.get(i, t + 1) > t]
        live[[i for i in rows if i not in moved]] = False
        prompter.advance(parsed.actions, np.ones(n, bool), states, moved, states, [])
    total = sum(len(p[0]) for p in played)
    if game == "negotiation":
        reasons = {w: list(stopped.values()).count(w) for w in set(stopped.values())}
        print(f"negotiation: {compared} of {total} observations compared; stopped {reasons}")
        assert compared > 0.75 * total and set(reasons) <= {
            "0.7.4 keeps a denied offer pending",
            "0.7.4 lets a proposer accept its own offer",
        }, reasons
    else:
        assert not stopped and compared == total


def test_where_spirals_envs_differ_from_textarena():
    seen = {}
    for game, n in (("kuhn_poker", 6), ("negotiation", 10)):
        env = E.make(game)
        texts = [s for turns, _, _ in _record(game, env, n, seed=3) for _, s, _ in turns]
        seen[game] = "\n".join(texts)
    for game, stated in SPIRAL_ENV_DIFFERS.items():
        for theirs, _spirals in stated:
            assert theirs in seen[game], (game, theirs)


def test_spiral_action_formats_replies_as_spiral_does():
    assert S.spiral_action("so \\boxed{4}") == "[4]"
    assert S.spiral_action("\\boxed{[4]} then \\boxed{ check }") == "[check]"
    assert S.spiral_action("\\boxed{\\text{bet}}") == "[bet]"
    assert S.spiral_action("[call]") == "[call]"  # no box: the whole reply
    assert S.spiral_action("\\boxed{What  are you looking\nto trade?}") == (
        "What are you looking to trade?"
    )  # six words: not wrapped; spaces collapsed
    assert S.spiral_action("\\boxed{I'm open to negotiation.}") == "[I'm open to negotiation.]"


def test_negotiation_action_list_is_spirals():
    env = E.make("negotiation")
    p = S.prompter("spiral", env, 1)
    state = jax.vmap(env.init)(jax.random.split(jax.random.key(0), 1))
    p.start(state, [0])
    opening = p.observation(0, 0)
    first = negotiation_mirror.actions(opening, [], random.Random(0))
    offers = [a for a in first if a.startswith("[Offer")]
    assert first[len(offers) :] == list(negotiation_mirror.TALK) and 1 <= len(offers) <= 3
    for a in offers:
        give, want = re.fullmatch(r"\[Offer: (\d) (\w+) -> (\d) (\w+)\]", a).group(1, 3)
        assert 1 <= int(give) <= 3 and 1 <= int(want) <= 3
    offer = E.negotiation.encode(0, (2, 0), (0, 1))
    state = jax.vmap(env.step)(state, jnp.asarray([offer]))
    p.advance(np.array([offer]), np.array([False]), state, [0], state, [])
    answering = p.observation(0, 1)
    listed = negotiation_mirror.actions(answering, [], random.Random(0))
    assert listed[:4] == list(negotiation_mirror.RESPONSES)
    # through the style's check: an answer passes, talk of six words passes, an offer only
    # when it is one of those drawn, a short sentence never (it is wrapped in brackets first)
    p.render(state, [0])
    for reply, ok in (("\\boxed{That sounds good to me. [Accept]}", True),
                      ("\\boxed{What are you looking to trade?}", True),
                      ("\\boxed{I'm open to negotiation.}", False),
                      ("\\boxed{[Offer: 9 Wood -> 1 Gold]}", False)):  # fmt: skip
        parsed = p.parse(state, [reply], mode="boxed", key=jax.random.key(1))
        assert bool(parsed.format_ok[0]) == ok, reply
    accepted = p.parse(state, ["\\boxed{[Accept]}"], mode="boxed", key=jax.random.key(1))
    assert accepted.actions[0] == E.negotiation.ACCEPT


def test_style_is_chosen_by_checkpoint_and_validated(tmp_path, monkeypatch):
    assert S.default_style(jaxlens.BUILTIN_MODEL) == "builtin"
    assert S.default_style(tmp_path) == "spiral"
    S.write_style(tmp_path, "builtin")
    assert S.default_style(tmp_path) == "builtin"  # a policy trained in the builtin style
    cfg = train.SpiralConfig()
    assert cfg.prompt_style is None and cfg.rollout.env_options["kuhn_poker"]["variant"] == (
        "spiral_v1"
    )
    assert cfg.for_model(jaxlens.BUILTIN_MODEL).rollout.prompt_style == "builtin"
    assert cfg.for_model(tmp_path / "other").rollout.prompt_style == "spiral"
    quick = train.SpiralConfig.quick().for_model(tmp_path / "other")  # Kuhn Poker: SPIRAL's
    assert quick.rollout.env_options == {"kuhn_poker": {"variant": "spiral_v1"}}
    with pytest.raises(train.TrainError, match="variant='standard'"):  # asked for: refused
        train.SpiralConfig.quick(prompt_style="spiral")
    with pytest.raises(train.TrainError, match="prompt_style='bogus'"):
        train.SpiralConfig(prompt_style="bogus")
    with pytest.raises(ro.RolloutError, match="variant='standard'"):
        ro.RolloutConfig(games=("kuhn_poker",), prompt_style="spiral")
    monkeypatch.setitem(__import__("sys").modules, "textarena", None)
    mirror.textarena.cache_clear()
    try:
        with pytest.raises(
            mirror.TextArenaMissing, match=re.escape("pip install textarena==0.7.4")
        ):
            ro.RolloutConfig(games=("tictactoe",), prompt_style="spiral")
    finally:
        mirror.textarena.cache_clear()


def test_selfplay_rollout_in_the_spiral_style_on_the_tiny_model():
    from _spiral_model import tiny_model

    from rl.selfplay.policy import GenerationConfig, ModelPolicy

    config, params, tokenizer = tiny_model()
    policy = ModelPolicy(config, tokenizer, GenerationConfig(max_new_tokens=4))
    cfg = ro.RolloutConfig(slots=3, prompt_style="spiral",
                           env_options={"kuhn_poker": {"variant": "spiral_v1"}})  # fmt: skip
    out = ro.collect(policy, params, jax.random.key(1), config=cfg, episodes_per_slot=1)
    assert sorted(e.game for e in out.episodes) == sorted(E.BUILTIN)
    for s in out.samples:
        shown = tokenizer.decode(s.prompt_ids.tolist())
        assert "You are playing a two-player zero-sum game." in shown
        assert "[GAME] You are Player" in shown or "You are Player" in shown
