"""Direction and batching checks of the steer and score stages, on a planted model.

The planted model is the tiny random model with its (tied) embedding rows of the answer tokens
"5" and "1" moved by `+-K * u`: a residual along the unit direction `u` raises the logit of "5"
and lowers that of "1", so steering along `u` must raise the expected answer of every item,
i.e. the keyed readout of positively keyed items, and lower that of reverse-keyed ones. A probe
pointing along `-u` (a flipped sign) must fail the same checks.
"""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

import jaxlens
import jaxlens.personality as P
from jaxlens import probes
from jaxlens.personality import questionnaire, runtime, scoring, steering

K = 4.0  # how far the answer tokens' rows move along u


def _probe(directions):
    layers = directions.shape[0]
    return probes.Probe(
        directions=directions.astype(np.float32), coef=directions, intercept=np.zeros(layers),
        mean=np.zeros_like(directions), alpha=np.ones(layers), cv_mse=np.ones((layers, 1)),
        test_r2=np.zeros(layers), test_spearman=np.eye(layers)[1], train_spearman=np.zeros(layers),
        train_index=np.arange(2), test_index=np.arange(2),
    )  # fmt: skip


@pytest.fixture(scope="module")
def planted(tiny_model_dir):
    model = jaxlens.load_model(tiny_model_dir)
    u = np.random.default_rng(7).normal(size=model.config.d_model)
    u /= np.linalg.norm(u)
    five, one = (runtime.token_id(model.tokenizer, o) for o in ("5", "1"))
    table = model.params["embed"]["embedding"]
    push = jnp.asarray(K * u, table.dtype)
    params = {**model.params, "embed": {"embedding": table.at[five].add(push).at[one].add(-push)}}
    return dataclasses.replace(model, params=params), u


def _items(trait, keyed):
    return [i for i, it in enumerate(P.IPIP50) if it.trait == trait and it.keyed == keyed]


def _curve(model, direction, items):
    """The EXT readout of `items` along the sweep, steering EXT along `direction`."""
    n_layers = model.config.n_layers
    fitted = {t: _probe(np.tile(direction, (n_layers, 1))) for t in P.TRAITS}
    recipe = steering.Recipe(name="band", strengths=(-0.3, 0.0, 0.3))
    records = questionnaire.sweep(model, fitted, recipe, items=items)
    return steering.dose_response(records, "EXT", "EXT", False, questionnaire.READOUT)[1]


def _rises(curve):
    return bool(np.all(np.diff(curve) > 0.05))


def test_steering_along_the_planted_direction_raises_the_keyed_answer(planted):
    model, u = planted
    plus, minus = _items("EXT", +1), _items("EXT", -1)
    assert _rises(_curve(model, u, plus))  # "5" more likely: agreeing items score higher
    assert _rises(-_curve(model, u, minus))  # reverse keyed: 6 - x falls
    assert not _rises(_curve(model, -u, plus))  # the flipped sign fails the check


def test_choose_steering_finds_the_planted_position_and_layer(planted):
    """Two probe positions, random directions everywhere except -u at layer 2 of "last": the
    band is aimed there. EST's choose items (seed 0) are all reverse keyed, so raising "1"
    raises their keyed answers more than any other trait's (their choose items mix the keys)."""
    model, u = planted
    split = questionnaire.item_split(5, seed=0)
    assert all(P.IPIP50[i].keyed < 0 for i in split.choose["EST"])
    n_layers, width = model.config.n_layers, model.config.d_model

    def directions(seed, planted_at=None):
        d = np.random.default_rng(seed).normal(size=(n_layers, width))
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        if planted_at is not None:
            d[planted_at] = -u
        return {t: _probe(d) for t in P.TRAITS}

    by_position = {"prompt_mean": directions(3), "last": directions(4, planted_at=2)}
    recipe = steering.Recipe(name="band", band=0, strengths=(-0.3, 0.3))
    choices, scores = questionnaire.choose_steering(
        model, by_position, recipe, items=split.items("choose"), scales=(1.0, 0.5)
    )
    assert (choices["EST"].position, choices["EST"].layer) == ("last", 2), choices["EST"]
    assert np.asarray(scores["last"]["EST"]).shape == (n_layers, 2)
    flipped = {"last": {t: _probe(-by_position["last"][t].directions) for t in P.TRAITS}}
    worse, _ = questionnaire.choose_steering(
        model, flipped, recipe, items=split.items("choose"), scales=(1.0,)
    )
    assert worse["EST"].score < choices["EST"].score  # the sign of the direction matters


def test_item_split_is_seeded_disjoint_and_complete():
    a, b = questionnaire.item_split(5, seed=0), questionnaire.item_split(5, seed=1)
    assert a == questionnaire.item_split(5, seed=0) and a != b
    for t in P.TRAITS:
        own = {i for i, it in enumerate(P.IPIP50) if it.trait == t}
        assert set(a.choose[t]) | set(a.measure[t]) == own
        assert not set(a.choose[t]) & set(a.measure[t]) and len(a.choose[t]) == 5
    with pytest.raises(ValueError, match="choose=10"):
        questionnaire.item_split(10)


def test_score_characters_in_batches_equals_one_at_a_time(planted, tmp_path):
    """Three characters per chunk (150 rows, length-sorted across characters) give each
    character the same 50 answers as scoring it alone."""
    model, _ = planted
    roster = P.bundled_roster()[:3]
    together, alone = tmp_path / "together.jsonl", tmp_path / "alone.jsonl"
    scoring.score_characters(model, roster, together, config=scoring.ScoreConfig(batch_size=150))
    for c in roster:
        scoring.score_characters(model, [c], alone, config=scoring.ScoreConfig(batch_size=50))
    got, want = scoring.read_scores(together, roster), scoring.read_scores(alone, roster)
    np.testing.assert_allclose(got["ev"], want["ev"], atol=2e-4)
    # characters and items differ by more than the tolerance, so a shuffle would show
    assert np.abs(want["ev"][0] - want["ev"][1]).max() > 1e-2
    assert np.abs(np.diff(want["ev"][0])).max() > 1e-2


def test_forced_choice_labels_mark_the_positive_statements():
    """The mask of trait-positive letters marks exactly the lines that show one of the trait's
    5 positive statements, in every order, without and with a persona card."""
    roster = P.bundled_roster()[:1]
    for trait in P.TRAITS:
        convs, positive, with_context = steering.forced_choice_prompts(trait, 10, roster)
        assert positive.shape == (20, 10) and with_context.sum() == 10
        for conv, mask in zip(convs, positive, strict=True):
            lines = conv[-1]["content"].splitlines()[1:]
            shown = [line.split(". ", 1)[1] for line in lines]
            good = [s in P.SELF_STATEMENTS[trait][:5] for s in shown]
            assert list(mask) == good and sum(good) == 5
