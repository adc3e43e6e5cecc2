"""The study's stages on a tiny random model: parsing, exactness of captures and steering,
restartable outputs, and every stage end to end."""

import json

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxlens
import jaxlens.personality as P
from jaxlens.personality import activations, formats, runtime, scoring, steering, study

FILLER = st.text(alphabet=st.sampled_from("abcxyz ,.!?()\n'\"-"), max_size=30)


@settings(max_examples=200, deadline=None)
@given(value=st.integers(1, 5), before=FILLER, after=FILLER, label=st.booleans())
def test_parse_likert_messy_replies(value, before, after, label):
    reply = before + str(value) + (f" ({P.LIKERT[value - 1]})" if label else "") + " " + after
    assert P.parse_likert(reply) == value


@settings(max_examples=100, deadline=None)
@given(value=st.integers(1, 5), before=FILLER, after=FILLER, upper=st.booleans())
def test_parse_likert_label_only(value, before, after, upper):
    label = P.LIKERT[value - 1].upper() if upper else P.LIKERT[value - 1]
    assert P.parse_likert(f"{before} I {label}. {after}") == value


def test_parse_likert_rejects_and_ignores():
    assert P.parse_likert("no idea") is None
    assert P.parse_likert("I'd say 10 or 2.5, so 4.") == 4
    assert P.parse_likert("Answer: 6. Hmm, 3") == 3
    assert P.parse_picks("I pick A, c, B, B, D and E.") is None  # "I" pronoun, "c" lower case
    assert P.parse_picks("I'd say I, A, B, D and E") == [8, 0, 1, 3, 4]
    assert P.parse_picks("Picks: J,A,B,D,E") == [9, 0, 1, 3, 4]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return runtime.load_model(tiny_model_dir)


def test_prompt_captures_equal_a_plain_forward(tiny):
    convs = [
        [{"role": "system", "content": formats.sampling_system("I am calm: agree.")},
         {"role": "user", "content": P.INSTRUCTIONS[k]}]
        for k in range(3)
    ]  # fmt: skip
    batch = next(runtime.batches(tiny.tokenizer, convs, batch_size=3, bucket=16))
    last, mean = runtime.prompt_captures(tiny, batch)
    for reduce, got in (("mean", mean), ("last", last)):
        ref = jaxlens.forward(
            tiny.params, batch.tokens, config=tiny.config, attention_mask=batch.mask,
            capture=jaxlens.Capture(("resid_post",), reduce=reduce),
        ).captures["resid_post"]  # fmt: skip
        np.testing.assert_allclose(got, np.asarray(ref, np.float32), rtol=1e-5, atol=1e-5)


def test_steering_at_strength_zero_is_exactly_unsteered(tiny):
    roster = P.bundled_roster()[:1]
    convs, positive, _ = steering.forced_choice_prompts("EXT", 2, roster)
    base, _ = steering.forced_choice(tiny, convs, positive, None, generated=False)
    d = np.random.default_rng(0).normal(size=(tiny.config.n_layers, tiny.config.d_model))
    d = (d / np.linalg.norm(d, axis=1, keepdims=True)).astype(np.float32)
    for recipe in (steering.Recipe(name="band"), steering.Recipe(name="last")):
        zero = steering.interventions(recipe, d, 1, 0.0)
        got, _ = steering.forced_choice(tiny, convs, positive, zero, generated=False)
        np.testing.assert_array_equal(got, base)
        moved, _ = steering.forced_choice(
            tiny, convs, positive, steering.interventions(recipe, d * 50, 1, 0.3), generated=False
        )
        assert not np.array_equal(moved, base)


def test_option_readouts_by_hand():
    logp = np.log(np.array([[0.1, 0.1, 0.2, 0.2, 0.2]]))  # mass 0.8
    r = scoring.readouts(logp)
    assert abs(r["ev"][0] - (0.1 + 0.2 + 0.6 + 0.8 + 1.0) / 0.8) < 1e-9
    assert r["argmax"][0] == 3 and abs(r["mass"][0] - 0.8) < 1e-9


def test_study_end_to_end_and_rerun(tiny_model_dir, tmp_path):
    roster = P.bundled_roster()[:5]
    config = study.StudyConfig.quick(
        sample=activations.SampleConfig(instructions=2, adjective_instructions=1, max_new_tokens=4),
        recipes=(steering.Recipe(name="band", strengths=(-0.3, 0.0, 0.3)),),
        orders=1,
        folds=2,
        test_fraction=0.4,
    )
    head = P.run_study(tiny_model_dir, tmp_path, roster=roster, config=config)
    assert set(head["probe_spearman"]) == set(P.TRAITS)
    assert set(head["steer_shift"]) == set(P.TRAITS) == set(head["steer_shift_context"])
    for stage in ("score", "sample", "probe", "steer"):
        report = (tmp_path / stage / "report.md").read_text()
        assert report.startswith("#") and (tmp_path / stage / "config.json").exists()
    for fig in ("spearman_prompt_mean", "r2_last", "trait_cosines", "adjective_auc"):
        assert (tmp_path / "probe" / f"{fig}.png").exists()
    assert (tmp_path / "steer" / "dose_band_context.png").exists()
    lines = (tmp_path / "score" / "scores.jsonl").read_text().splitlines()
    assert len(lines) == 5 and all(len(json.loads(x)["ev"]) == 50 for x in lines)
    acts, rows = activations.load(tmp_path / "sample", "gen_mean")
    assert acts.shape == (tiny_model_config(tiny_model_dir).n_layers, 10 + 40, 64)
    assert np.isfinite(acts).all()
    # a rerun does nothing new: no character rescored, no shard resampled
    model = runtime.load_model(tiny_model_dir)
    assert scoring.score_characters(model, roster, tmp_path / "score" / "scores.jsonl") == 0
    manifest = (tmp_path / "sample" / "manifest.json").read_text()
    shard = tmp_path / "sample" / "shard_00000.npz"
    stamp = shard.stat().st_mtime_ns
    answers = scoring.read_scores(tmp_path / "score" / "scores.jsonl", roster)["argmax"]
    activations.sample(
        model, answers, tmp_path / "sample", config=config.sample, model_path=str(tiny_model_dir)
    )
    assert shard.stat().st_mtime_ns == stamp
    assert (tmp_path / "sample" / "manifest.json").read_text() == manifest
    with pytest.raises(activations.ManifestMismatch):
        activations.sample(model, answers[:, ::-1], tmp_path / "sample", config=config.sample)


def tiny_model_config(path):
    return jaxlens.load_hf(path)[0]


def test_plan_shapes_only():
    from jaxlens.personality import plan

    c = jaxlens.ModelConfig(**plan.LLAMA_33_70B)
    p = plan.memory_plan(c, {"data": 1, "fsdp": 8}, batch=8, prompt_len=3584, new_tokens=64)
    n_params = 2 * 128256 * 8192 + 80 * (2 * 8192 * 8192 + 2 * 8192 * 1024 + 3 * 8192 * 28672)
    assert abs(p["weights"] - n_params * 2 / 8) / p["weights"] < 0.01
    assert p["prompt capture [L,B,T,D]"] >= 80 * 3584 * 8192 * 2
    assert "fits" in plan.report("8xH100")
    assert jnp.dtype(c.dtype) == jnp.bfloat16
