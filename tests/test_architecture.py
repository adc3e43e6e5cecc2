"""docs/architecture.md describes the code as it is.

- Every dotted public name it writes in inline code (`jaxlens.runs.RunFolder`,
  `rl.selfplay.run_study(...)`, `jaxlens.sharding.RULES[layout]`) imports and resolves.
- Every bare call it writes (`load_model(path, ...)`, `steer(...)`) is a public name of one of
  the packages' namespaces.
- Every axis name used in a jaxtyping shape annotation anywhere in the packages is one of the
  axis names its table lists, so the vocabulary is checked where it is written.
"""

import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "architecture.md"
PACKAGES = ("jaxlens", "sae", "rl")
NAMESPACES = (
    "jaxlens", "jaxlens.hf", "jaxlens.runs", "jaxlens.builtin", "jaxlens.personality",
    "jaxlens.sharding", "sae", "sae.evolution", "rl", "rl.envs", "rl.selfplay",
)  # fmt: skip
JAXTYPING_DTYPES = {"Float", "Int", "Bool", "Shaped", "UInt", "Integer", "Num", "Real", "Key"}

FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`([^`\n]+)`")
DOTTED = re.compile(r"(?<![\w.])((?:jaxlens|sae|rl)(?:\.[A-Za-z_]\w*)+)")
BARE_CALL = re.compile(r"^([A-Za-z_]\w*)\(")
AXIS_ROW = re.compile(r"^\| `([^`]+)` \|", re.MULTILINE)


def _spans() -> list[str]:
    return INLINE_CODE.findall(FENCE.sub("", DOC.read_text()))


def resolve(dotted: str) -> bool:
    """Imports the longest module prefix of `dotted` and looks the rest up as attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            if not hasattr(obj, name):
                return False
            obj = getattr(obj, name)
        return True
    return False


def test_dotted_names_resolve():
    names = sorted({m for span in _spans() for m in DOTTED.findall(span)})
    assert len(names) > 30, names  # the page names the public surface, not nothing
    missing = [n for n in names if not resolve(n)]
    assert not missing, f"docs/architecture.md names what does not exist: {missing}"


def test_bare_calls_are_public_names():
    calls = sorted({m.group(1) for s in _spans() if (m := BARE_CALL.match(s))})
    spaces = [importlib.import_module(n) for n in NAMESPACES]
    missing = [c for c in calls if not any(hasattr(ns, c) for ns in spaces)]
    assert not missing, f"docs/architecture.md calls names no package exports: {missing}"


def axis_vocabulary() -> set[str]:
    text = DOC.read_text()
    table = text[text.index("### Axis names") :]
    return set(AXIS_ROW.findall(table.split("\n\n", 2)[1]))


def annotation_axes(path: Path) -> list[tuple[int, str]]:
    """`(line, name)` for every axis name in `Dtype[Array, "..."]` annotations of a file."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name)):
            continue
        if node.value.id not in JAXTYPING_DTYPES or not isinstance(node.slice, ast.Tuple):
            continue
        shape = node.slice.elts[-1]
        if isinstance(shape, ast.Constant) and isinstance(shape.value, str):
            out += [(node.lineno, n) for n in re.findall(r"[A-Za-z_]\w*", shape.value)]
    return out


def test_every_annotation_uses_the_documented_axis_names():
    vocab = axis_vocabulary()
    assert {"B", "T", "D", "L", "N"} <= vocab, vocab
    used, unknown = set(), []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            for line, name in annotation_axes(path):
                used.add(name)
                if name not in vocab:
                    unknown.append(f"{path.relative_to(ROOT)}:{line}: {name}")
    assert not unknown, "axis names missing from docs/architecture.md's table:\n" + "\n".join(
        unknown
    )
    assert {"B", "T", "D"} <= used  # the core is annotated


def test_the_checks_can_fail(tmp_path):
    assert resolve("jaxlens.runs.RunFolder") and not resolve("jaxlens.runs.NoSuchThing")
    assert not resolve("jaxlens.no_such_module.x")
    bad = tmp_path / "bad.py"
    bad.write_text('def f(x: Float[Array, "B Q"]) -> Int[Array, " B"]: ...\n')
    assert sorted(annotation_axes(bad)) == [(1, "B"), (1, "B"), (1, "Q")]


@pytest.mark.parametrize("span", ["`jaxlens.load_model(path)`", "`rl.selfplay.run_study`"])
def test_patterns_find_names(span):
    assert DOTTED.findall(span.strip("`"))
