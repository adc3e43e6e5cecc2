"""The study's stages on a tiny random model: parsing, exactness of captures and steering,
restartable outputs, and every stage end to end."""

import json
import runpy
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxlens
import jaxlens.personality as P
from jaxlens import probes
from jaxlens.personality import activations, formats, runtime, scoring, steering, study

SCRIPTS = Path(__file__).resolve().parents[3] / "scripts"
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
    return jaxlens.load_model(tiny_model_dir)


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


def test_statement_orders_rotate_every_statement_through_every_letter():
    ten = steering.statement_orders(10, seed=3)
    assert all(sorted(row) == list(range(10)) for row in ten)
    for letter in range(10):  # a Latin square: each statement once under each letter
        assert sorted(ten[:, letter]) == list(range(10))
    two = steering.statement_orders(2, seed=3)
    np.testing.assert_array_equal(two[1], np.roll(two[0], 5))
    twelve = steering.statement_orders(12, seed=3)
    np.testing.assert_array_equal(twelve[:10], ten)  # a new shuffle starts the next block
    assert not np.array_equal(twelve[10], ten[0])


def test_steering_at_strength_zero_is_exactly_unsteered(tiny):
    roster = P.bundled_roster()[:1]
    convs, positive, _ = steering.forced_choice_prompts("EXT", 2, roster)
    base, _ = steering.forced_choice(tiny, convs, positive, None, generated=False)
    d = np.random.default_rng(0).normal(size=(tiny.config.n_layers, tiny.config.d_model))
    d = (d / np.linalg.norm(d, axis=1, keepdims=True)).astype(np.float32)
    norms = steering.mean_norms(tiny, convs)
    assert norms.shape == (tiny.config.n_layers,) and np.all(norms > 0)
    for recipe in (steering.Recipe(name="band"), steering.Recipe(name="last")):
        zero = steering.interventions(recipe, d, 1, 0.0, norms=norms)
        got, _ = steering.forced_choice(tiny, convs, positive, zero, generated=False)
        np.testing.assert_array_equal(got, base)
        push = steering.interventions(recipe, d * 50, 1, 0.3, norms=norms)
        moved, _ = steering.forced_choice(tiny, convs, positive, push, generated=False)
        assert not np.array_equal(moved, base)


def _forward_one(model, conv, **kw):
    ids = jaxlens.apply_chat_template(model.tokenizer, conv, **kw)
    return jaxlens.forward(
        model.params, jnp.asarray([ids]), config=model.config,
        capture=jaxlens.Capture(("resid_post",), reduce="mean"),
    )  # fmt: skip


def _judge_by_hand(model, conv, reply, options):
    ask = steering.judge_conversation("EXT", conv[0]["content"], reply)
    ids = jaxlens.apply_chat_template(model.tokenizer, ask, add_generation_prompt=True)
    logits = jaxlens.forward(model.params, jnp.asarray([ids]), config=model.config).logits
    p = np.exp(np.asarray(jax.nn.log_softmax(logits[0, -1].astype(jnp.float32)))[options])
    return float((p * np.arange(1, 6)).sum() / p.sum())


def test_open_ended_replies_scored_by_probe_and_judge(tiny):
    """Strength 0 gives the unsteered greedy replies; the probe score is the probe applied to a
    plain forward of prompt + reply; the judge score is the Likert expected value of its option
    logits, recomputed here one conversation at a time."""
    L, D = tiny.config.n_layers, tiny.config.d_model
    d = np.random.default_rng(1).normal(size=(L, D))
    d = d / np.linalg.norm(d, axis=1, keepdims=True)
    probe = probes.Probe(
        directions=d.astype(np.float32), coef=d, intercept=np.full(L, 0.5), mean=np.zeros((L, D)),
        alpha=np.ones(L), cv_mse=np.ones((L, 1)), test_r2=np.zeros(L),
        test_spearman=np.eye(L)[1], train_spearman=np.zeros(L),
        train_index=np.arange(2), test_index=np.arange(2),
    )  # fmt: skip
    recipe = steering.Recipe(name="band", strengths=(0.0, 0.3))
    zero, steered = steering.open_ended(
        tiny, probe._replace(directions=probe.directions * 50), "EXT", recipe,
        instructions=2, max_new_tokens=6, judge=tiny,
    )  # fmt: skip
    convs = [[{"role": "user", "content": P.INSTRUCTIONS[i]}] for i in range(2)]
    batch = next(runtime.batches(tiny.tokenizer, convs, batch_size=2))
    plain = runtime.decode(tiny, runtime.generate(tiny, batch, max_new_tokens=6), 2)
    assert [plain[i] for i in np.argsort(batch.rows)] == zero["replies"]
    assert steered["replies"] != zero["replies"]
    options = [runtime.token_id(tiny.tokenizer, o) for o in scoring.OPTIONS]
    for rec in (zero, steered):
        pairs = list(zip(convs, rec["replies"], strict=True))
        full = [c + [{"role": "assistant", "content": t}] for c, t in pairs]
        mean = [
            np.asarray(_forward_one(tiny, c, add_generation_prompt=False).captures["resid_post"])
            for c in full
        ]
        want = np.mean([probe.predict(m)[1, 0] for m in mean])
        np.testing.assert_allclose(rec["probe"], want, rtol=1e-4, atol=1e-4)
        judged = steering.judge_scores(tiny, "EXT", convs, rec["replies"])
        assert judged.shape == (2,) and np.all((judged >= 1) & (judged <= 5))
        np.testing.assert_allclose(rec["judge"], judged.mean(), rtol=1e-6)
        evs = [_judge_by_hand(tiny, c, t, options) for c, t in pairs]
        np.testing.assert_allclose(judged, evs, rtol=1e-4, atol=1e-4)


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
        choose_scales=(1.0,),
    )
    head = P.run_study(tiny_model_dir, tmp_path, roster=roster, config=config)
    choice = json.loads((tmp_path / "steer" / "choice_band.json").read_text())
    assert {c["position"] for c in choice["choices"].values()} <= set(activations.POSITIONS)
    assert head["steer_probe"] == {t: c["position"] for t, c in choice["choices"].items()}
    assert set(head["probe_spearman"]) == set(P.TRAITS)
    assert set(head["steer_shift"]) == set(P.TRAITS) == set(head["steer_shift_context"])
    for stage in ("score", "sample", "probe", "steer"):
        report = (tmp_path / stage / "report.md").read_text()
        assert report.startswith("#") and (tmp_path / stage / "config.json").exists()
    for fig in ("spearman_prompt_mean", "r2_last", "trait_cosines", "adjective_auc"):
        assert (tmp_path / "probe" / f"{fig}.png").exists()
    assert (tmp_path / "steer" / "dose_band_context.png").exists()
    assert (tmp_path / "steer" / "questionnaire_band_context.png").exists()
    for key in ("questionnaire_shift", "questionnaire_shift_context", "questionnaire_clean"):
        assert set(head[key]) == set(P.TRAITS)
    split = json.loads((tmp_path / "steer" / "config.json").read_text())["config"]["item_split"]
    assert split["seed"] == 0 and all(len(split["measure"][t]) == 5 for t in P.TRAITS)
    lines = (tmp_path / "score" / "scores.jsonl").read_text().splitlines()
    assert len(lines) == 5 and all(len(json.loads(x)["ev"]) == 50 for x in lines)
    acts, rows = activations.load(tmp_path / "sample", "gen_mean")
    assert acts.shape == (tiny_model_config(tiny_model_dir).n_layers, 10 + 40, 64)
    assert np.isfinite(acts).all()
    # a rerun does nothing new: no character rescored, no shard resampled
    model = jaxlens.load_model(tiny_model_dir)
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
    # the script's steer stage on its own steers along the saved probes: no refit
    saved = tmp_path / "probe" / "probes.npz"
    stamp = saved.stat().st_mtime_ns
    script = runpy.run_path(str(SCRIPTS / "personality_study.py"), run_name="personality_study")
    script["main"](["--stage", "steer", "--quick", "--steer-choice", "probe",
                    "--model", str(tiny_model_dir), "--out", str(tmp_path)])  # fmt: skip
    assert saved.stat().st_mtime_ns == stamp
    assert json.loads((tmp_path / "steer" / "forced_choice.json").read_text())["band"]


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


def test_probe_warnings_say_why_a_probe_has_no_spearman():
    rng = np.random.default_rng(0)
    chars, instructions, layers, d = 40, 2, 3, 8
    rows = [{"kind": "persona", "character": c, "instruction": i}
            for c in range(chars) for i in range(instructions)]  # fmt: skip
    groups = np.array([r["character"] for r in rows])
    y = rng.normal(size=chars)
    signal = rng.normal(size=d)
    acts = rng.normal(size=(layers, len(rows), d)) * 0.1 + y[groups][None, :, None] * signal

    def fitted(a, scores):
        return {t: probes.fit(a, scores[t][groups], groups=groups) for t in ("EXT", "AGR")}

    ok = {"EXT": y, "AGR": -y}
    assert study.probe_warnings(acts, rows, ok, fitted(acts, ok)) == []
    flat = {"EXT": np.full(chars, 30.0), "AGR": y}  # one trait scored alike for everyone
    (message,) = study.probe_warnings(acts, rows, flat, fitted(acts, flat))
    assert message.startswith("EXT:") and "same EXT score (30)" in message
    # every character's prompt alike under each instruction: activations carry no character
    alike = np.repeat(rng.normal(size=(layers, 1, instructions, d)), chars, axis=1)
    alike = alike.reshape(layers, len(rows), d)
    messages = study.probe_warnings(alike, rows, ok, fitted(alike, ok))
    assert len(messages) == 2 and all("same for every character" in m for m in messages)
