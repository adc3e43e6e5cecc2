"""The offline reasoning harness: answer normalisation, scoring, the bundled set, bad files."""

import json

import pytest

import rl.reasoning as R


@pytest.mark.parametrize(
    "a, b",
    [
        ("\\frac{2}{4}", "0.5"),
        ("1/2", "$\\dfrac12$"),
        ("-\\frac{3}{6}", "-0.5"),
        ("1,000", "1000"),
        ("\\text{42}.", "42"),
        ("\\left(1,2\\right)", "(1, 2)"),
        ("7", "7.0"),
    ],
)
def test_equal_answers_normalise_alike(a, b):
    assert R.normalize(a) == R.normalize(b)


@pytest.mark.parametrize("a, b", [("1/2", "1/3"), ("12", "1,2"), ("x+1", "x-1"), ("10", "100")])
def test_different_answers_stay_different(a, b):
    assert R.normalize(a) != R.normalize(b)


def test_scores_the_last_boxed_answer():
    items = [
        {"question": "q1", "answer": "\\frac{1}{2}"},
        {"question": "q2", "answer": "4"},
        {"question": "q3", "answer": "9"},
    ]
    replies = ["first \\boxed{3}, no: \\boxed{0.5}", "\\boxed{5}", "nine"]
    out = R.score(replies, items)
    assert out.correct == [True, False, False]
    assert out.accuracy == pytest.approx(1 / 3) and out.boxed_rate == pytest.approx(2 / 3)


def test_evaluate_batches_prompts_and_an_oracle_scores_one():
    items = R.load_jsonl(R.BUNDLED)
    assert items == R.make_arithmetic()  # the bundled file is what the generator makes
    answers = {R.prompt(it["question"]): it["answer"] for it in items}
    sizes = []

    def oracle(prompts):
        sizes.append(len(prompts))
        return [f"So \\boxed{{{answers[p]}}}" for p in prompts]

    assert R.evaluate(oracle, items, batch=16).accuracy == 1.0
    assert max(sizes) == 16 and sum(sizes) == len(items)
    assert R.evaluate(lambda ps: ["\\boxed{-1}"] * len(ps), items).accuracy < 0.1


def test_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        R.load_jsonl(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "q"}) + "\n")
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        R.load_jsonl(bad)
