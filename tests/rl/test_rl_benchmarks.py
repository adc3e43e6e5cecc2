"""Reasoning benchmarks from local files: the usual field names in JSONL and parquet, SPIRAL's
evaluation prompt, grades equal to math-verify's on tricky answers, pass@1 and its error."""

import json

import jax
import numpy as np
import pytest

import rl.benchmarks as B
from rl.selfplay.policy import Replies

math_verify = pytest.importorskip("math_verify")
datasets = pytest.importorskip("datasets")

# (reply, reference, the right grade)
TRICKY = [
    ("so \\boxed{0.5}", "\\frac{1}{2}", True),
    ("\\boxed{\\dfrac{1}{2}}", "\\frac12", True),
    ("\\boxed{1/2}", "0.5", True),
    ("\\boxed{\\frac{2}{4}}", "\\frac{1}{3}", False),
    ("\\boxed{0.25}", "\\frac{1}{4}", True),
    ("\\boxed{0.33}", "\\frac{1}{3}", False),
    ("\\boxed{10\\text{ cm}}", "10", True),
    ("\\boxed{10}", "10\\text{ cm}", True),
    ("\\boxed{12\\text{ cm}}", "10", False),
    ("\\boxed{(1,3]}", "(1, 3]", True),
    ("\\boxed{[1,3]}", "(1, 3]", False),
    ("\\boxed{(-\\infty, 2)}", "(-\\infty,2)", True),
    ("\\boxed{-3}", "-3", True),
    ("\\boxed{3}", "-3", False),
    ("\\boxed{-\\frac{3}{4}}", "-0.75", True),
    ("first \\boxed{2}, finally \\boxed{3}", "3", True),
    ("first \\boxed{3}, finally \\boxed{2}", "3", False),
    ("\\boxed{\\frac{\\sqrt{2}}{2}}", "\\frac{1}{\\sqrt{2}}", True),
    ("\\boxed{1,000}", "1000", True),
    ("no box: 7", "7", False),
]


@pytest.mark.parametrize("reply, gold, right", TRICKY)
def test_math_grade_equals_math_verify(reply, gold, right):
    """Our grade (the last \\boxed{}, SPIRAL's rule) equals math-verify's verdict on that box,
    and for a reply with one box, math-verify's verdict on the whole reply."""
    ours = B.grade_math(reply, gold)
    assert ours == right
    boxes = reply.count("\\boxed{")
    if boxes == 1:
        whole = math_verify.verify(math_verify.parse(f"${gold}$"), math_verify.parse(reply))
        assert ours == whole
    elif boxes > 1:
        last = "\\boxed{" + reply.rsplit("\\boxed{", 1)[1]
        assert ours == math_verify.verify(math_verify.parse(f"${gold}$"), math_verify.parse(last))


def test_choice_grade_reads_the_boxed_letter():
    assert B.grade_choice("so \\boxed{B}", "B") and B.grade_choice("\\boxed{\\text{(C)}}", "C")
    assert B.grade_choice("\\boxed{D. 42}", "D") and not B.grade_choice("\\boxed{Because}", "B")
    assert not B.grade_choice("\\boxed{A} then \\boxed{C}", "A")  # the last box counts


def _write(tmp_path, name, records):
    path = tmp_path / name
    if name.endswith(".parquet"):
        datasets.Dataset.from_list(records).to_parquet(str(path))
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_usual_files_load_with_their_field_names(tmp_path):
    math500 = _write(tmp_path, "math500.jsonl", [
        {"problem": "What is $1+1$?", "solution": "... \\boxed{2}", "answer": "2", "level": 1},
        {"problem": "Half of one?", "solution": "It is \\boxed{\\frac12}.", "answer": "\\frac12",
         "level": 2},
    ])  # fmt: skip
    aime = _write(tmp_path, "aime24.parquet", [{"Problem": "Find N.", "Answer": 204, "ID": "1"}])
    olympiad = _write(tmp_path, "olympiad.jsonl", [{"question": "x?", "final_answer": ["$3$"]}])
    no_answer = _write(tmp_path, "minerva.jsonl", [{"problem": "p", "solution": "\\boxed{7}"}])
    gpqa = _write(tmp_path, "gpqa.parquet", [{
        "Question": "Which?", "Correct Answer": "right", "Incorrect Answer 1": "w1",
        "Incorrect Answer 2": "w2", "Incorrect Answer 3": "w3",
    }])  # fmt: skip
    mmlu = _write(tmp_path, "mmlu_pro.parquet", [
        {"question": "Q?", "options": ["a", "b", "c", "d", "e"], "answer": "C", "answer_index": 2}
    ])  # fmt: skip
    m = B.load(math500)
    assert (m.name, m.kind, [it.answer for it in m.items]) == ("math500", "math", ["2", "\\frac12"])
    assert B.load(aime).items == [B.Item("Find N.", "204")]
    assert B.load(olympiad).items[0].answer == "$3$" and B.load(no_answer).items[0].answer == "7"
    (g,) = B.load(gpqa).items
    assert sorted(g.choices) == ["right", "w1", "w2", "w3"]
    assert g.choices[B.LETTERS.index(g.answer)] == "right"
    assert B.load(gpqa).items == [g]  # the same order every time
    (q,) = B.load(mmlu).items
    assert (q.answer, q.choices[2], B.load(mmlu).kind) == ("C", "c", "choice")
    assert B.prompt(q) == (
        "Question: Q?\nA. a\nB. b\nC. c\nD. d\nE. e\n"
        "Please reason step by step, and put your final answer within \\boxed{}."
    )
    with pytest.raises(FileNotFoundError):
        B.load(tmp_path / "missing.jsonl")
    with pytest.raises(B.BenchmarkError, match="no question field"):
        B.load(_write(tmp_path, "bad.jsonl", [{"text": "x", "answer": "1"}]))


class Scripted:
    """Answers question i correctly in its first `i % 3` of every 2 samples (capped)."""

    def __init__(self):
        self.calls = 0

    def generate(self, params, prompts, key, *, rows=None):
        texts = []
        for p in prompts:
            n = int(p.split("What is ")[1].split("?")[0])
            texts.append(f"\\boxed{{{n if self.calls % 2 < n % 3 else -1}}}")
            self.calls += 1
        return Replies(texts, [np.zeros(1, np.int32)] * len(texts), [], 0.0)


def test_pass_at_1_over_samples_with_its_standard_error():
    items = [B.Item(f"What is {n}?", str(n)) for n in range(6)]
    bench = B.Benchmark("toy", "math", items)
    res = B.evaluate_policy(Scripted(), None, jax.random.PRNGKey(0), bench, samples=2, rows=4)
    want = np.array([min(n % 3, 2) / 2 for n in range(6)])  # 0, .5, 1, 0, .5, 1
    assert res.per_question == pytest.approx(want.tolist()) and res.samples == 2
    assert res.pass1 == pytest.approx(want.mean())
    assert res.stderr == pytest.approx(want.std(ddof=1) / np.sqrt(6))
    assert res.grader == "math-verify" and res.boxed_rate == 1.0
    both = B.overall([res, res._replace(pass1=0.0)])
    assert both["pass1"] == pytest.approx(want.mean() / 2)
