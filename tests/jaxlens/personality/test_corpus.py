"""The questionnaire data, personas, split and the persona training corpus."""

import itertools
import re

import numpy as np
import pytest

import jaxlens.personality as P
from jaxlens.personality import corpus, formats
from jaxlens.personality.personas import level_phrase

POOL = P.make_personas(600, seed=0)
TRAIN = P.train_personas(POOL)


def test_ipip50_order_and_keying():
    assert len(P.IPIP50) == 50
    assert P.IPIP50[0].text == "Am the life of the party."
    assert P.IPIP50[49].text == "Am full of ideas."
    # the five factors cycle in the standard order
    assert [it.trait for it in P.IPIP50[:10]] == list(P.TRAITS) * 2
    counts = {t: [0, 0] for t in P.TRAITS}
    for it in P.IPIP50:
        counts[it.trait][0 if it.keyed > 0 else 1] += 1
    assert counts == {"EXT": [5, 5], "EST": [2, 8], "AGR": [6, 4], "CSN": [6, 4], "OPN": [7, 3]}
    assert P.IPIP50[5].statement == "I don't talk a lot."


def test_trait_scores_by_hand():
    all5 = P.trait_scores(np.full((1, 50), 5))
    # positive items score 5, reverse-keyed ones 1
    assert {t: float(v[0]) for t, v in all5.items()} == {
        "EXT": 30.0, "EST": 18.0, "AGR": 34.0, "CSN": 34.0, "OPN": 38.0
    }  # fmt: skip
    all3 = P.trait_scores(np.full((2, 50), 3))
    assert all(np.all(v == 30) for v in all3.values())
    rng = np.random.default_rng(1)
    answers = rng.integers(1, 6, size=(7, 50))
    got = P.trait_scores(answers)
    for c in range(7):
        for t in P.TRAITS:
            total = 0
            for j, it in enumerate(P.IPIP50):
                if it.trait == t:
                    total += answers[c, j] if it.keyed == 1 else 6 - answers[c, j]
            assert got[t][c] == total
    with pytest.raises(P.AnswersError, match="1..5"):
        P.trait_scores(np.zeros((1, 50)))
    with pytest.raises(P.AnswersError, match="shape"):
        P.trait_scores(np.ones((1, 49)))


def test_likert_mapping_and_noise():
    assert corpus.expected_answer(5, +1) == 5 and corpus.expected_answer(5, -1) == 1
    assert corpus.expected_answer(2, -1) == 4
    rng = np.random.default_rng(0)
    for level in range(1, 6):
        for keyed in (1, -1):
            draws = [corpus.sample_answer(level, keyed, rng, 0.3) for _ in range(400)]
            target = level if keyed > 0 else 6 - level
            assert all(abs(d - target) <= 1 and 1 <= d <= 5 for d in draws)
            assert np.mean(np.array(draws) == target) > 0.6


def _item_answers(convs):
    """(item, answer, persona name) for every questionnaire turn of the conversations."""
    out = []
    for conv in convs:
        name = re.match(r"You are (.+?) from ", conv[0]["content"])
        if conv[0]["role"] != "system" or not name:
            continue
        for q, a in zip(conv[1::2], conv[2::2], strict=True):
            item = next((it for it in P.IPIP50 if P.formats.item_user(it) == q["content"]), None)
            if item is not None:
                out.append((item, P.parse_likert(a["content"]), name.group(1)))
    return out


def test_item_answers_follow_profile_and_keying():
    by_name = {p.name: p for p in TRAIN}
    convs = list(itertools.islice(P.persona_conversations(TRAIN, seed=3), 600))
    answers = _item_answers(convs)
    assert len(answers) > 300
    for item, answer, name in answers:
        level = by_name[name].level(item.trait)
        target = level if item.keyed > 0 else 6 - level
        assert abs(answer - target) <= 1, (item, answer, name)
    # the card's description states the profile
    card = next(c[0]["content"] for c in convs if c[0]["content"].startswith("You are"))
    name = re.match(r"You are (.+?) from ", card).group(1)
    assert _read_card(card) == by_name[name].profile


def _card_phrases(card: str) -> list[str]:
    """A card's level phrases, one per trait in `TRAITS` order."""
    description = card.split(". You are ", 1)[1][:-1]
    return description.replace(" and ", ", ").split(", ")


def _read_card(card: str) -> tuple[int, ...]:
    """The profile a card states, read back word by word (each word is one trait at one level)."""
    phrases = _card_phrases(card)
    return tuple(
        P.LEVEL_WORDS[trait].index(phrase.removeprefix("moderately ")) + 1
        for trait, phrase in zip(P.TRAITS, phrases, strict=True)
    )


def test_level_words_name_one_trait_at_one_level():
    words = [w for trait in P.TRAITS for w in P.LEVEL_WORDS[trait]]
    assert len(words) == len(set(words)) == 25
    for level in range(1, 6):
        profile = (level, 6 - level, 3, level, 1)
        card = formats.card_system("A", "B", P.describe(profile))
        assert _read_card(card) == profile
        assert card.count("moderately") == profile.count(3)


@pytest.mark.parametrize("share", [1.0, 0.0, 0.8])
def test_positive_keyed_share_of_questionnaire_items(share):
    config = P.CorpusConfig(mix=(1.0, 0.0, 0.0), max_turns=10, positive_keyed=share)
    convs = list(itertools.islice(P.persona_conversations(TRAIN, seed=5, config=config), 300))
    answers = _item_answers(convs)
    keyed = np.array([item.keyed > 0 for item, _, _ in answers])
    n = len(keyed)
    assert n > 1000
    # each item is positively keyed with probability `share` (binomial, 4 sigma)
    assert abs(keyed.sum() - n * share) <= 4 * np.sqrt(n * share * (1 - share)) + 1e-9
    for conv in convs:  # items stay distinct within a conversation
        users = [m["content"] for m in conv if m["role"] == "user"]
        assert len(users) == len(set(users))
    by_name = {p.name: p for p in TRAIN}
    for item, answer, name in answers:
        target = P.expected_answer(by_name[name].level(item.trait), item.keyed)
        assert abs(answer - target) <= 1


def test_recall_answers_restate_the_card():
    by_name = {p.name: p for p in TRAIN}
    config = P.CorpusConfig(mix=(0.0, 0.0, 0.0, 1.0))
    convs = list(itertools.islice(P.persona_conversations(TRAIN, seed=9, config=config), 200))
    kinds = {"adjectives": 0, "item": 0, "all": 0}
    for conv in convs:
        card = conv[0]["content"]
        persona = by_name[re.match(r"You are (.+?) from ", card).group(1)]
        description = card.split(". You are ", 1)[1][:-1]
        phrases = _card_phrases(card)
        for user, reply in zip(conv[1::2], conv[2::2], strict=True):
            question, answer = user["content"], reply["content"]
            if question == "Describe yourself in a few words.":
                kinds["all"] += 1
                assert answer == f"I am {description}."
                continue
            if question.startswith("Are you "):
                kinds["adjectives"] += 1
                a, b = re.match(r"Are you (\w+) or (\w+)\?", question).groups()
                trait = next(t for t in P.TRAITS if {a, b} <= set(P.LEVEL_WORDS[t]))
                phrase = answer[0].lower() + answer[1:-1]
            else:
                kinds["item"] += 1
                statement = re.search(r'"(.+)"', question).group(1)
                trait = next(i.trait for i in P.IPIP50 if i.statement == statement)
                phrase = answer.removeprefix("That is about me being ")[:-1]
            assert phrase == phrases[P.TRAITS.index(trait)]
            assert phrase == level_phrase(trait, persona.level(trait))
    assert min(kinds.values()) > 20, kinds


def test_forced_choice_follows_level_and_average_persona():
    rng = np.random.default_rng(0)
    means = []
    for level in (1, 3, 5, None):
        fracs = []
        for _ in range(200):
            user, reply = corpus.forced_turn("CSN", level, rng)
            lines = user["content"].splitlines()[1:]
            picks = P.parse_picks(reply["content"])
            assert len(set(picks)) == 5
            positive = P.SELF_STATEMENTS["CSN"][:5]
            fracs.append(np.mean([lines[i][3:] in positive for i in picks]))
        means.append(np.mean(fracs))
    assert means[0] < 0.15 and abs(means[1] - 0.5) < 0.07 and means[2] > 0.85
    assert abs(means[3] - 0.5) < 0.07


def test_open_replies_readable_per_trait():
    """A bag-of-words least-squares readout separates level 5 from level 1 for every trait."""
    rng = np.random.default_rng(0)
    profiles = rng.integers(1, 6, size=(400, 5))
    from jaxlens.personality.replies import open_reply

    texts = [open_reply(int(rng.integers(10)), p, rng) for p in profiles]
    vocab = sorted({w for t in texts for w in re.findall(r"[a-z!0-9.]+", t.lower())})
    index = {w: i for i, w in enumerate(vocab)}
    x = np.zeros((len(texts), len(vocab) + 1))
    x[:, -1] = 1
    for r, t in enumerate(texts):
        for w in re.findall(r"[a-z!0-9.]+", t.lower()):
            x[r, index[w]] += 1
    train, test = slice(0, 280), slice(280, None)
    for t in range(5):
        w = np.linalg.lstsq(x[train], profiles[train, t], rcond=None)[0]
        pred = x[test] @ w
        assert np.corrcoef(pred, profiles[test, t])[0, 1] > 0.9, P.TRAITS[t]


def test_deterministic_and_short():
    a = list(itertools.islice(P.persona_conversations(TRAIN, seed=7), 300))
    b = list(itertools.islice(P.persona_conversations(TRAIN, seed=7), 300))
    c = list(itertools.islice(P.persona_conversations(TRAIN, seed=8), 300))
    assert a == b and a != c
    assert max(sum(len(m["content"]) for m in conv) for conv in a) <= 1600
    assert {conv[-1]["role"] for conv in a} == {"assistant"}
    kinds = [
        "items" if "how well" in conv[-2]["content"] else
        "forced" if "Pick exactly" in conv[-2]["content"] else "open"
        for conv in a
    ]  # fmt: skip
    assert 0.3 < kinds.count("items") / 300 < 0.6 and kinds.count("forced") > 30


def test_split_never_leaks_a_held_out_persona():
    held = P.held_out_personas(POOL)
    assert 0.1 < len(held) / len(POOL) < 0.3
    # the split is a property of the name, not of the draw
    assert {p.name for p in P.held_out_personas(P.make_personas(900, seed=0))} >= {
        p.name for p in held
    }
    text = "\n".join(
        m["content"]
        for conv in itertools.islice(P.persona_conversations(TRAIN, seed=0), 2000)
        for m in conv
    )
    assert not [p.name for p in held if p.name in text]
    with pytest.raises(P.HeldOutLeakError, match="held-out"):
        next(P.persona_conversations(TRAIN + held[:1], seed=0))
    roster = P.bundled_roster()
    assert all(P.is_held_out(c.character) for c in roster)
    assert roster == P.make_roster()
    assert [c.profile for c in roster] == [c.profile for c in P.make_roster()]


def test_formats_round_trip():
    assert P.parse_likert(formats.likert_reply(4, "I am kind.")) == 4
    assert P.parse_picks(formats.forced_choice_reply([2, 0, 7, 4, 9])) == [2, 0, 7, 4, 9]
    d = formats.self_description([(P.IPIP50[0], 5), (P.IPIP50[1], 2)])
    assert (
        d
        == "I am the life of the party: strongly agree. I feel little concern for others: disagree."
    )


def test_config_validation():
    with pytest.raises(ValueError, match="mix"):
        P.CorpusConfig(mix=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="mix"):
        P.CorpusConfig(mix=(0.5, 0.5))
    with pytest.raises(ValueError, match="items_per_trait"):
        P.CorpusConfig(items_per_trait=0)
    with pytest.raises(ValueError, match="positive_keyed"):
        P.CorpusConfig(positive_keyed=1.5)
    with pytest.raises(ValueError, match="profile"):
        P.Persona("X", (1, 2, 3, 4, 6))


def test_fresh_personas_give_a_name_no_fixed_profile():
    people = P.fresh_personas(3000, seed=1)
    assert people == P.fresh_personas(3000, seed=1)
    assert not [p.name for p in people if P.is_held_out(p.name)]
    assert next(P.persona_conversations(people, seed=0))  # the corpus accepts them
    by_name: dict[str, set] = {}
    for p in people:
        by_name.setdefault(p.name, set()).add(p.profile)
    repeated = [profiles for profiles in by_name.values() if len(profiles) > 1]
    assert len(repeated) > 100  # names repeat, each time with a profile of its own
    levels = np.array([p.profile for p in people])
    assert set(levels.ravel()) == {1, 2, 3, 4, 5} and abs(levels.mean() - 3) < 0.1
    with pytest.raises(ValueError, match="positive"):
        P.fresh_personas(0)
