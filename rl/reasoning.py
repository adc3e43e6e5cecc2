"""An offline reasoning harness: JSONL (question, answer) in, accuracy of boxed answers out.

    items = rl.reasoning.load_jsonl(rl.reasoning.BUNDLED)     # or any local .jsonl
    result = rl.reasoning.evaluate_policy(policy, params, key, items)
    result.accuracy

Each line of the file is `{"question": str, "answer": str}`. A question is sent as the user
message with the instruction to reason and box the final answer (`prompt`); the reply's last
`\\boxed{...}` (`rl.text.last_boxed`) is compared with the reference after `normalize`:
LaTeX wrappers (`$`, `\\text{}`, `\\left`/`\\right`, `\\!`, `\\dfrac`/`\\tfrac`), spaces,
thousands separators and a trailing period are dropped, and anything that reads as a number or
a fraction (`0.5`, `1/2`, `\\frac{1}{2}`, `-\\frac12`) becomes its exact reduced fraction, so
`\\frac{2}{4}`, `0.5` and `1/2` are the same answer.

`BUNDLED` is a small arithmetic set of our own (integer and fraction arithmetic, made by
`make_arithmetic`), so the harness runs with no download; SPIRAL evaluated on MATH500, AIME,
GPQA and others - put their JSONL files anywhere and pass the path.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from rl.text import last_boxed

BUNDLED = Path(__file__).parent / "data" / "arithmetic.jsonl"
INSTRUCTION = "Think it through step by step, then give the final answer in \\boxed{}."


class ReasoningError(ValueError):
    """A malformed JSONL file or item."""


class Result(NamedTuple):
    accuracy: float
    boxed_rate: float  # replies that held a \boxed{} answer
    n: int
    correct: list[bool]
    replies: list[str]


def load_jsonl(path: str | Path) -> list[dict[str, str]]:
    """The items of a JSONL file; each needs string (or number) "question" and "answer"."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such JSONL file")
    items = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as err:
            raise ReasoningError(f"{path}:{n}: not valid JSON ({err})") from None
        if not isinstance(item, dict) or not {"question", "answer"} <= set(item):
            raise ReasoningError(f"{path}:{n}: expected an object with 'question' and 'answer'")
        items.append({"question": str(item["question"]), "answer": str(item["answer"])})
    return items


def prompt(question: str) -> str:
    return f"{question.strip()}\n\n{INSTRUCTION}"


_FRAC = re.compile(r"^(-?)\\frac\{?(-?\d+)\}?\{?(-?\d+)\}?$")
_WRAPPERS = re.compile(r"\\text\{([^{}]*)\}|\\mathrm\{([^{}]*)\}|\\mbox\{([^{}]*)\}")


def normalize(answer: str) -> str:
    """A canonical form of an answer string (see the module docstring)."""
    s = str(answer).strip()
    s = _WRAPPERS.sub(lambda m: next(g for g in m.groups() if g is not None), s)
    for token in ("$", "\\left", "\\right", "\\!", "\\,", "\\;", "\\ ", "{,}"):
        s = s.replace(token, "")
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = re.sub(r"\s+", "", s).rstrip(".")
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", s):
        s = s.replace(",", "")
    value = _number(s)
    return s if value is None else str(value)


def _number(s: str) -> Fraction | None:
    m = _FRAC.match(s)
    try:
        if m:
            value = Fraction(int(m.group(2)), int(m.group(3)))
            return -value if m.group(1) else value
        if re.fullmatch(r"-?\d+(\.\d+)?(/-?\d+(\.\d+)?)?", s):
            return Fraction(s)
    except (ValueError, ZeroDivisionError):
        return None
    return None


def is_correct(reply: str, answer: str) -> bool:
    boxed = last_boxed(reply)
    return boxed is not None and normalize(boxed) == normalize(answer)


def score(replies: Sequence[str], items: Sequence[dict[str, str]]) -> Result:
    if len(replies) != len(items):
        raise ReasoningError(f"score: {len(replies)} replies for {len(items)} items")
    correct = [is_correct(r, it["answer"]) for r, it in zip(replies, items, strict=True)]
    boxed = [last_boxed(r) is not None for r in replies]
    n = len(items)
    return Result(
        float(np.mean(correct)) if n else 0.0,
        float(np.mean(boxed)) if n else 0.0,
        n,
        correct,
        list(replies),
    )


def evaluate(generate: Callable[[list[str]], list[str]], items, *, batch: int = 16) -> Result:
    """Accuracy of `generate` (prompts -> replies) on `items`, `batch` prompts per call."""
    replies: list[str] = []
    for i in range(0, len(items), batch):
        chunk = [prompt(it["question"]) for it in items[i : i + batch]]
        replies += list(generate(chunk))
    return score(replies, items)


def evaluate_policy(policy: Any, params: Any, key: Any, items, *, rows: int = 16) -> Result:
    """`evaluate` with an `rl.selfplay.ModelPolicy` (one batched generate per `rows` items)."""
    import jax

    counter = iter(range(1 << 30))

    def generate(prompts: list[str]) -> list[str]:
        k = jax.random.fold_in(key, next(counter))
        return policy.generate(params, prompts, k, rows=rows).texts

    return evaluate(generate, items, batch=rows)


def make_arithmetic(n: int = 60, seed: int = 0) -> list[dict[str, str]]:
    """The bundled set: integer sums / products / differences and fraction sums (exact)."""
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        kind = i % 4
        a, b = (int(x) for x in rng.integers(2, 60, 2))
        if kind == 0:
            items.append({"question": f"What is {a} + {b}?", "answer": str(a + b)})
        elif kind == 1:
            items.append({"question": f"What is {a} - {b}?", "answer": str(a - b)})
        elif kind == 2:
            a, b = a % 13 + 2, b % 13 + 2
            items.append({"question": f"What is {a} times {b}?", "answer": str(a * b)})
        else:
            p, q, r, s = (int(x) for x in rng.integers(1, 9, 4))
            value = Fraction(p, q + 1) + Fraction(r, s + 1)
            answer = f"\\frac{{{value.numerator}}}{{{value.denominator}}}"
            answer = answer if value.denominator != 1 else str(value.numerator)
            items.append(
                {
                    "question": f"Compute {p}/{q + 1} + {r}/{s + 1} as a reduced fraction.",
                    "answer": answer,
                }
            )
    return items
