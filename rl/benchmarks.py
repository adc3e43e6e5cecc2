r"""Reasoning benchmarks as users have them: local copies in, pass@1 with its standard error out.

    bench = rl.benchmarks.load("math500.jsonl")       # or .parquet; GPQA / MMLU-Pro too
    result = rl.benchmarks.evaluate_policy(policy, params, key, bench, samples=4)
    result.pass1, result.stderr

Files are read from local paths only (`datasets` with `HF_DATASETS_OFFLINE=1`; JSONL, JSON or
parquet; without `datasets` installed, JSONL only), with the usual field names of the sets
SPIRAL evaluated on:

- math (MATH-500, AIME 2024/2025, AMC 2023, Minerva Math, OlympiadBench): the question in
  `problem` / `question` / `Problem` / `Question`, the reference in `answer` / `final_answer` /
  `Answer` / `expected_answer` (a list: its first element; none: the last `\boxed{}` of
  `solution`);
- multiple choice: MMLU-Pro (`options` and a letter `answer` or `answer_index`), GPQA as
  released (`Question`, `Correct Answer`, `Incorrect Answer 1-3`: the four are shuffled per
  question by a seed taken from the question's text, so every run asks the same order), or any
  `choices` list with a letter or index answer.

Each question is the user message of SPIRAL's evaluation template (`TEMPLATE`, oat's
"qwen3_general": "Question: ...\nPlease reason step by step, and put your final answer within
\boxed{}."; choices follow the question as "A. ..." lines). A reply is graded on its last
`\boxed{}` (SPIRAL's rule): math by `math-verify` (`verify(parse(gold), parse(boxed))`; the
normalised comparison of `rl.reasoning` when math-verify is not installed, named in
`Result.grader`), multiple choice by the letter boxed. pass@1 is each question's fraction of
correct replies over `samples` replies, averaged over questions; its standard error is the
spread of those per-question means over the questions (`std / sqrt(questions)`). Over several
benchmarks `overall` averages the benchmarks' pass@1 with equal weight (as papers report).
"""

from __future__ import annotations

import json
import os
import random
import re
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from rl import reasoning
from rl.text import last_boxed

TEMPLATE = (
    "Question: {question}\nPlease reason step by step, and put your final answer within "
    "\\boxed{{}}."
)
QUESTION_FIELDS = ("problem", "question", "Problem", "Question")
ANSWER_FIELDS = ("answer", "final_answer", "Answer", "expected_answer")
LETTERS = "ABCDEFGHIJKLMNOP"
FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}


class BenchmarkError(ValueError):
    """A benchmark file or record this module cannot read."""


class Item(NamedTuple):
    question: str
    answer: str  # the reference: a math expression, or the correct letter
    choices: tuple[str, ...] = ()  # multiple choice: the options, in the order asked


class Benchmark(NamedTuple):
    name: str  # the file's stem
    kind: str  # "math" or "choice"
    items: list[Item]


class Result(NamedTuple):
    name: str
    kind: str
    questions: int
    samples: int  # replies per question
    pass1: float
    stderr: float
    boxed_rate: float  # replies with a \boxed{} answer
    grader: str  # "math-verify", "normalize" (math-verify missing) or "letter"
    per_question: list[float]
    replies: list[list[str]]


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """The records of a local JSONL / JSON / parquet file, through `datasets`, offline."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such benchmark file")
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise BenchmarkError(f"{path}: expected one of {sorted(FORMATS)}")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    try:
        import datasets
    except ImportError:
        if path.suffix.lower() != ".jsonl":
            raise BenchmarkError(f"{path}: reading {fmt} needs `pip install datasets`") from None
        lines = path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]
    data = datasets.load_dataset(fmt, data_files=str(path.absolute()), split="train")
    return list(data)


def _first(record: dict[str, Any], fields: Sequence[str]) -> Any:
    return next((record[f] for f in fields if record.get(f) is not None), None)


def _letter(answer: Any, record: dict[str, Any], n: int, where: str) -> str:
    if record.get("answer_index") is not None:
        answer = record["answer_index"]
    if isinstance(answer, (int, np.integer)) and 0 <= int(answer) < n:
        return LETTERS[int(answer)]
    text = str(answer).strip().strip("()").upper()
    if len(text) == 1 and text in LETTERS[:n]:
        return text
    raise BenchmarkError(f"{where}: answer {answer!r} is not a letter or index of {n} choices")


def to_item(record: dict[str, Any], where: str) -> Item:
    """One benchmark record as an `Item` (field names: the module docstring)."""
    question = _first(record, QUESTION_FIELDS)
    if question is None:
        raise BenchmarkError(f"{where}: no question field (expected one of {QUESTION_FIELDS})")
    question = str(question).strip()
    if record.get("Correct Answer") is not None:  # GPQA as released
        wrong = [record.get(f"Incorrect Answer {i}") for i in (1, 2, 3)]
        choices = [str(record["Correct Answer"]).strip()] + [str(w).strip() for w in wrong if w]
        random.Random(zlib.crc32(question.encode())).shuffle(choices)
        correct = choices.index(str(record["Correct Answer"]).strip())
        return Item(question, LETTERS[correct], tuple(choices))
    options = record.get("options", record.get("choices"))
    if isinstance(options, (list, tuple)) and options:
        options = tuple(str(o) for o in options if o is not None and str(o) != "N/A")
        letter = _letter(_first(record, ANSWER_FIELDS), record, len(options), where)
        return Item(question, letter, options)
    answer = _first(record, ANSWER_FIELDS)
    if isinstance(answer, (list, tuple)):
        answer = answer[0] if answer else None
    if answer is None and record.get("solution"):
        answer = last_boxed(str(record["solution"]))
    if answer is None:
        raise BenchmarkError(f"{where}: no answer field (expected one of {ANSWER_FIELDS})")
    return Item(question, str(answer).strip(), ())


def load(path: str | Path, *, limit: int | None = None) -> Benchmark:
    """A benchmark file as `Benchmark` (its first `limit` items when given)."""
    records = read_records(path)[: limit or None]
    items = [to_item(r, f"{path}: record {i}") for i, r in enumerate(records)]
    if not items:
        raise BenchmarkError(f"{path}: no records")
    kinds = {bool(it.choices) for it in items}
    if len(kinds) > 1:
        raise BenchmarkError(f"{path}: mixes multiple-choice and open-answer records")
    return Benchmark(Path(path).stem, "choice" if kinds == {True} else "math", items)


def prompt(item: Item) -> str:
    """The user message: SPIRAL's evaluation template around the question (and choices)."""
    question = item.question
    if item.choices:
        question += "\n" + "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(item.choices))
    return TEMPLATE.format(question=question)


def math_grader() -> str:
    """ "math-verify" when it is installed, else "normalize" (`rl.reasoning.normalize`)."""
    try:
        import math_verify  # noqa: F401
    except ImportError:
        return "normalize"
    return "math-verify"


def grade_math(reply: str, answer: str, *, grader: str | None = None) -> bool:
    """Whether the reply's last `\\boxed{}` equals `answer` (math-verify by default)."""
    boxed = last_boxed(reply)
    if boxed is None:
        return False
    if (grader or math_grader()) == "normalize":
        return reasoning.normalize(boxed) == reasoning.normalize(answer)
    from math_verify import parse, verify

    gold = parse(f"${answer}$")
    return bool(gold) and bool(verify(gold, parse(f"\\boxed{{{boxed}}}")))


_LETTER = re.compile(r"^\(?([A-P])\)?(?:[.:)]|\s|$)")


def grade_choice(reply: str, answer: str) -> bool:
    """Whether the reply's last `\\boxed{}` names the correct letter (`\\text{B}`, `(B)`,
    `B. text` and `B` all name B)."""
    boxed = last_boxed(reply)
    if boxed is None:
        return False
    text = re.sub(r"\\text(?:bf)?\{([^{}]*)\}", r"\1", boxed).strip()
    m = _LETTER.match(text)
    return m is not None and m.group(1) == answer


def score(bench: Benchmark, replies: list[list[str]]) -> Result:
    """pass@1 and its standard error of `replies[q]` (the samples of question q)."""
    if len(replies) != len(bench.items) or len({len(r) for r in replies}) != 1:
        raise BenchmarkError("score: expected the same number of replies for each question")
    grader = "letter" if bench.kind == "choice" else math_grader()
    per_question = []
    for item, rs in zip(bench.items, replies, strict=True):
        if bench.kind == "choice":
            ok = [grade_choice(r, item.answer) for r in rs]
        else:
            ok = [grade_math(r, item.answer, grader=grader) for r in rs]
        per_question.append(float(np.mean(ok)))
    q = np.asarray(per_question)
    stderr = float(q.std(ddof=1) / np.sqrt(len(q))) if len(q) > 1 else 0.0
    boxed = float(np.mean([last_boxed(r) is not None for rs in replies for r in rs]))
    return Result(
        bench.name, bench.kind, len(q), len(replies[0]), float(q.mean()), stderr, boxed, grader,
        per_question, replies,
    )  # fmt: skip


def evaluate_policy(
    policy: Any, params: Any, key: Any, bench: Benchmark, *, samples: int = 1, rows: int = 16
) -> Result:
    """`samples` replies to each question from `policy.generate` (batches of `rows` prompts,
    the i-th batch with key `fold_in(key, i)`), scored by `score`."""
    import jax

    if not isinstance(samples, int) or samples < 1:
        raise BenchmarkError(f"samples={samples!r}: expected an int >= 1")
    prompts = [prompt(it) for it in bench.items for _ in range(samples)]
    texts: list[str] = []
    for i in range(0, len(prompts), rows):
        chunk = prompts[i : i + rows]
        texts += policy.generate(params, chunk, jax.random.fold_in(key, i // rows), rows=rows).texts
    replies = [texts[q * samples : (q + 1) * samples] for q in range(len(bench.items))]
    return score(bench, replies)


def overall(results: Sequence[Result]) -> dict[str, float]:
    """The benchmarks' pass@1 averaged with equal weight, and its standard error."""
    if not results:
        return {"pass1": 0.0, "stderr": 0.0, "benchmarks": 0}
    p = float(np.mean([r.pass1 for r in results]))
    se = float(np.sqrt(sum(r.stderr**2 for r in results)) / len(results))
    return {"pass1": p, "stderr": se, "benchmarks": len(results)}
