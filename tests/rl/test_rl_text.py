"""The text layer: prompts, both reply conventions, the penalty conventions, parser properties."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rl.envs as E
import rl.text as T
from rl.envs import kuhn_poker as K
from rl.envs import negotiation as N
from rl.envs.negotiation import text as negotiation_text

TTT = E.make("tictactoe")
KUHN = E.make("kuhn_poker")
NEG = E.make("negotiation")


@pytest.fixture(scope="module")
def positions(play):
    """A few mid-game states of each game."""
    kuhn0 = jax.jit(KUHN.init)(jax.random.key(1)).replace(
        cards=jnp.asarray([[2, 0], [1, 2], [0, 1], [2, 1], [1, 0]], jnp.int8)
    )
    return {
        "ttt": play(TTT, [4, 0])[-1],
        "kuhn": play(KUHN, [K.BET, K.CALL, K.CHECK], kuhn0)[-1],
        "kuhn0": kuhn0,
        "neg": play(NEG, [N.encode(N.R_NONE, (3, 0), (0, 2))])[-1],
    }


def test_tictactoe_prompt(positions):
    text = T.render(TTT, positions["ttt"], 0)
    assert "Player 0 and play O" in text and "Player 1 plays X" in text
    assert " X | 1 | 2\n---+---+---\n 3 | O | 5" in text
    assert "Legal moves: [1], [2], [3], [5], [6], [7], [8]." in text
    assert text.rstrip().endswith("\\boxed{[4]}.") and "\\boxed{}" in text
    other = T.render(TTT, positions["ttt"], 1)
    assert "Player 1 and play X" in other and "It is Player 0's turn." in other


def test_kuhn_prompt_shows_own_card_only(positions):
    state = positions["kuhn"]  # round 2 (opened by P0, who checked); P0 holds Q, P1 holds K
    text = T.render(KUHN, state, 1)
    assert "Your card: K" in text and "Round 2 of 5" in text and "Player 0 checked" in text
    assert "Legal moves: [check], [bet]." in text
    assert "showdown: Player 0 had K, Player 1 had J; Player 0 won 2 chips" in text
    # the prompt must not depend on the opponent's unseen card
    swapped = state.replace(cards=state.cards.at[1, 0].set(0))
    assert T.render(KUHN, swapped, 1) == text
    assert T.render(KUHN, swapped, 0) != T.render(KUHN, state, 0)


@pytest.mark.parametrize("variant", ["standard", "spiral_v1", "textarena"])
def test_kuhn_prompt_states_the_variant_rules(positions, variant):
    env = E.make("kuhn_poker", variant=variant)
    text = T.render(env, positions["kuhn0"], 1)
    assert ("winner of the last round wins" in text) == (variant == "spiral_v1")
    assert ("puts 1 more chip" in text) == (variant == "standard")


def test_negotiation_prompt(positions, play):
    state = positions["neg"]
    text = T.render(NEG, state, 1, messages=["Deal? [Offer: 3 Wood -> 2 Gold]"])
    assert "You value Wood at 15 and Gold at 5" in text
    assert "Pending offer: Player 0 offers you 3 Wood -> 2 Gold." in text
    assert "Said: 'Deal? [Offer: 3 Wood -> 2 Gold]'" in text
    assert "[Accept]" in text and "Move 2 of 10" in text
    done = play(NEG, [N.ACCEPT], state)[-1]
    assert "accepted the offer; the trade was made" in T.render(NEG, done, 0)
    assert "Your inventory: 7 Wood, 12 Gold (value 215, gain +15)" in T.render(NEG, done, 0)


def test_render_batch_and_bad_input(positions):
    batch = jax.tree.map(lambda *x: jnp.stack(x), positions["ttt"], positions["ttt"])
    texts = T.render_batch(TTT, batch)
    assert texts == [T.render(TTT, positions["ttt"], 0)] * 2
    with pytest.raises(T.TextError, match="player"):
        T.render(TTT, positions["ttt"], 2)
    with pytest.raises(T.TextError, match="rl.envs"):
        T.render(object(), positions["ttt"], 0)
    with pytest.raises(T.TextError, match="one state"):
        T.render(TTT, batch, 0)
    with pytest.raises(T.TextError, match="mode"):
        T.parse(TTT, positions["ttt"], "[1]", mode="loose")
    with pytest.raises(T.TextError, match="replies"):
        T.parse_batch(TTT, batch, ["[1]"])


@pytest.mark.parametrize(
    "reply, expect",
    [
        ("I pick \\boxed{3}", 3),
        ("\\boxed{[3]}", 3),
        ("first \\boxed{1} then finally \\boxed{ 5 }", 5),
        ("\\boxed{[ 3 ]}", T.INVALID),  # format check compares exactly
        ("\\boxed{[0]}", T.INVALID),  # occupied
        ("\\boxed{cell three please now ok ok}", T.INVALID),  # 6 words: not wrapped
        ("[3] without a box", T.INVALID),
        ("\\boxed{3", T.INVALID),  # unbalanced
        ("\\boxed{\\text{3}}", T.INVALID),
    ],
)
def test_boxed_mode_tictactoe(positions, reply, expect):
    action, reason = T.parse(TTT, positions["ttt"], reply)
    assert action == expect
    assert (reason == "") == (expect != T.INVALID)


@pytest.mark.parametrize(
    "reply, expect",
    [
        ("I take [ 3 ] and then [5]", 3),
        ("[0003]", 3),
        ("\\boxed{5} but [6]", 6),
        ("[0]", T.INVALID),
        ("[9]", T.INVALID),
        ("[" + "9" * 5000 + "]", T.INVALID),
        ("three", T.INVALID),
    ],
)
def test_env_mode_tictactoe(positions, reply, expect):
    assert T.parse(TTT, positions["ttt"], reply, mode="env")[0] == expect


def test_kuhn_conventions(positions):
    state = positions["kuhn"]
    assert T.parse(KUHN, state, "\\boxed{bet}")[0] == K.BET
    assert T.parse(KUHN, state, "\\boxed{Bet}")[0] == T.INVALID  # case-sensitive check
    assert T.parse(KUHN, state, "\\boxed{call}")[1].startswith("'[call]' is not one of")
    assert T.parse(KUHN, state, "I [BET] now", mode="env")[0] == K.BET
    assert T.parse(KUHN, state, "[fold]", mode="env") == (T.INVALID, KUHN.REASONS[K.NOT_NOW])


@pytest.mark.parametrize(
    "text, expect",
    [
        ("[Offer: 3 Wood -> 2 Gold]", (N.R_NONE, (3, 0), (0, 2))),
        ("[offer: I give 2 woods and 1 GOLD -> 1 Gold, 1 Gold.]", (N.R_NONE, (2, 1), (0, 2))),
        ("[Accept] [Offer: I offer 1 Wood -> 2 Golds!]", (N.R_ACCEPT, (1, 0), (0, 2))),
        ("[deny] [accept]", (N.R_ACCEPT, (0, 0), (0, 0))),
        ("[Deny] no thanks", (N.R_DENY, (0, 0), (0, 0))),
        ("let us talk. [Offer 3 Wood -> 2 Gold]", (N.R_NONE, (0, 0), (0, 0))),  # no colon
        ("[Offer: 30 Wood -> 1 Gold]", (N.R_NONE, (21, 0), (0, 1))),
        ("[Offer: 0 Wood -> 2 Gold]", None),
        ("[Offer: 3 Sheep -> 2 Gold]", None),
        ("[Offer: 3 Wood 2 Gold]", None),
        ("[Offer: 3 Wood -> 2 Gold -> 1 Wood]", None),
        ("[Offer: Wood -> Gold]", None),
    ],
)
def test_negotiation_grammar(text, expect):
    action, reason = negotiation_text.read(text)
    if expect is None:
        assert action == T.INVALID and "malformed offer" in reason
    else:
        assert action == N.encode(*expect)


def test_negotiation_boxed_goes_to_the_env_unfiltered(positions):
    state = positions["neg"]  # P0 offered 3 Wood -> 2 Gold, P1 to move
    assert T.parse(NEG, state, "ok \\boxed{Accept}") == (N.ACCEPT, "")
    assert T.parse(NEG, state, "\\boxed{I think we should trade now ok}") == (N.TALK, "")
    action, reason = T.parse(NEG, state, "\\boxed{[Offer: 11 Wood -> 1 Gold]}")
    assert action == T.INVALID and reason == NEG.REASONS[N.GIVER_LACKS]
    assert T.parse(NEG, state, "[Accept]")[1] == "no \\boxed{...} answer found"


def test_step_replies_conventions(positions):
    batch = lambda s: jax.tree.map(lambda x: jnp.stack([x] * 3), s)
    replies = ["\\boxed{3}", "no box [3]", "\\boxed{[0]}"]
    cases = {"spiral": [-1.5, 0.5], "eval": [-1.0, 1.0]}
    for convention, penalty in cases.items():
        nxt, parsed = T.step_replies(TTT, batch(positions["ttt"]), replies, convention=convention)
        assert parsed.actions.tolist() == [3, T.INVALID, T.INVALID]
        assert parsed.format_ok.tolist() == [True, False, False]
        assert np.asarray(nxt.terminated).tolist() == [False, True, True]
        assert np.asarray(nxt.rewards).tolist() == [[0.0, 0.0], penalty, penalty]
    nxt, parsed = T.step_replies(TTT, batch(positions["ttt"]), replies, convention="env")
    assert parsed.actions.tolist() == [T.INVALID, 3, T.INVALID]
    assert np.asarray(nxt.rewards).tolist() == [[-1.0, 0.0], [0.0, 0.0], [-1.0, 0.0]]
    # Negotiation: a rule-breaking move that passes the format check is the env's -1 / 0
    neg = batch(positions["neg"])
    nxt, parsed = T.step_replies(
        NEG, neg, ["\\boxed{[Offer: 11 Wood -> 1 Gold]}", "x", "\\boxed{Accept}"]
    )
    assert parsed.format_ok.tolist() == [True, False, True]
    assert np.asarray(nxt.rewards).tolist() == [[0.0, -1.0], [0.5, -1.5], [0.0, 0.0]]
    with pytest.raises(T.TextError, match="convention"):
        T.step_replies(TTT, batch(positions["ttt"]), replies, convention="train")


# ---- properties --------------------------------------------------------------------------

SETTINGS = settings(max_examples=150, deadline=None)
no_bracket_text = st.text(st.characters(blacklist_characters="[]\\"), max_size=60)


@SETTINGS
@given(reply=st.text(max_size=200), mode=st.sampled_from(T.MODES))
def test_arbitrary_replies_never_raise(positions, reply, mode):
    for env, key in ((TTT, "ttt"), (KUHN, "kuhn"), (NEG, "neg")):
        action, reason = T.parse(env, positions[key], reply, mode=mode)
        assert isinstance(action, int) and isinstance(reason, str)
        assert (action == T.INVALID) == (reason != "")


@SETTINGS
@given(
    reply=st.text(st.sampled_from("[]{}\\boxed0123456789 OfferWoodGold:->acceptdeny"), max_size=80)
)
def test_bracket_heavy_replies_never_raise(positions, reply):
    for env, key in ((TTT, "ttt"), (KUHN, "kuhn"), (NEG, "neg")):
        for mode in T.MODES:
            T.parse(env, positions[key], reply, mode=mode)


@SETTINGS
@given(pre=no_bracket_text, post=st.text(max_size=60), data=st.data())
def test_a_legal_bracketed_move_parses_to_itself(positions, pre, post, data):
    cell = data.draw(st.sampled_from([1, 2, 3, 5, 6, 7, 8]))
    pad = data.draw(st.sampled_from(["", " ", "  "]))
    assert T.parse(TTT, positions["ttt"], f"{pre}[{pad}{cell}{pad}]{post}", mode="env")[0] == cell
    move = data.draw(st.sampled_from(["check", "bet"]))
    cased = "".join(data.draw(st.sampled_from([c, c.upper()])) for c in move)
    assert T.parse(KUHN, positions["kuhn"], f"{pre}[{cased}]{post}", mode="env")[0] == (
        K.ACTION_NAMES.index(f"[{move}]")
    )
    tail = post.replace("\\boxed", "")
    boxed = data.draw(st.sampled_from([f"[{cell}]", f"{cell}", f" {cell} "]))
    assert T.parse(TTT, positions["ttt"], f"{pre}\\boxed{{{boxed}}}{tail}")[0] == cell


@SETTINGS
@given(
    give=st.tuples(st.integers(0, 12), st.integers(0, 12)),
    want=st.tuples(st.integers(0, 40), st.integers(0, 40)),
    joiner=st.sampled_from([", ", " and ", " , ", " "]),
    lead=st.sampled_from(["", "I give ", "i offer "]),
    pre=no_bracket_text,
    data=st.data(),
)
def test_any_well_formed_offer_parses_to_its_action(positions, give, want, joiner, lead, pre, data):
    if not any(give) or not any(want):
        return

    def side(q):
        names = [data.draw(st.sampled_from(["Wood", "wood", "WOODS"])),
                 data.draw(st.sampled_from(["Gold", "gold", "Golds"]))]  # fmt: skip
        return joiner.join(f"{n} {names[i]}" for i, n in enumerate(q) if n)

    text = f"{pre}[Offer: {lead}{side(give)} -> {side(want)}]"
    state = positions["neg"].replace(current_player=jnp.int32(0), offer_from=jnp.int32(-1))
    action, reason = T.parse(NEG, state, text, mode="env")
    giver_lacks = give[0] > 10 or give[1] > 10
    expect = T.INVALID if giver_lacks else N.encode(N.R_NONE, give, want)
    assert action == expect, (text, reason)
