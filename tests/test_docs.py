"""The repository explains itself: its docs name only files that exist, and nothing in the code
points at documents outside it.

- Every relative Markdown link (`[text](target)`, images included) in README.md, BENCHMARKS.md
  and docs/ resolves to a file or folder from the linking file's folder.
- Every repo path written in inline code in those files (`jaxlens/...`, `scripts/...`, ...)
  exists from the repository root (a `*` in it must match at least one file).
- No source, script or test mentions a design document, style guide or spec that lives outside
  the repository, or a tracker issue.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted([ROOT / "README.md", ROOT / "BENCHMARKS.md", *(ROOT / "docs").rglob("*.md")])
CODE_DIRS = ("jaxlens", "sae", "rl", "scripts", "tests")
TEXT_SUFFIXES = {".py", ".sh", ".md", ".toml", ".txt", ".cfg", ".yaml", ".yml"}

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`([^`\n]+)`")
REPO_PATH = re.compile(r"(?<![\w./-])((?:jaxlens|sae|rl|scripts|tests|docs|\.ci)/[\w.*/-]*)")
# Spelled in pieces so this file does not match its own patterns.
OUTSIDE = [
    re.compile("shared" + "/"),
    re.compile("STYLE" + r"\.md"),
    re.compile("DESIGN" + r"\.md"),
    re.compile(r"(?<!docs/)" + "games" + r"\.md"),
    re.compile(r"(?<!docs/)" + "papers" + r"\.md"),
    re.compile(r"\bthe " + "issue" + r"\b", re.IGNORECASE),
    re.compile(r"\b" + "issue" + r" ?#?\d+", re.IGNORECASE),
]


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _exists(path: Path, pattern: str) -> bool:
    if "*" in pattern:
        return any(ROOT.glob(pattern.rstrip("/")))
    return path.exists()


@pytest.mark.parametrize("doc", DOCS, ids=_rel)
def test_relative_links_resolve(doc):
    text = doc.read_text()
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # a URL (http:, mailto:) or an anchor in the same page
        path = target.split("#", 1)[0]
        if not (doc.parent / path).exists():
            broken.append(target)
    assert not broken, f"{_rel(doc)} links to missing files: {broken}"


@pytest.mark.parametrize("doc", DOCS, ids=_rel)
def test_inline_repo_paths_exist(doc):
    text = FENCE.sub("", doc.read_text())
    missing = []
    for span in INLINE_CODE.findall(text):
        for path in REPO_PATH.findall(span):
            path = path.rstrip(".")
            if not _exists(ROOT / path, path):
                missing.append(path)
    assert not missing, f"{_rel(doc)} names repo paths that do not exist: {missing}"


def test_code_mentions_no_outside_documents():
    me = Path(__file__).resolve()
    hits = []
    for folder in CODE_DIRS:
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix not in TEXT_SUFFIXES or path == me or "__pycache__" in path.parts:
                continue
            for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                if any(p.search(line) for p in OUTSIDE):
                    hits.append(f"{_rel(path)}:{n}: {line.strip()}")
    assert not hits, "references to documents outside the repository:\n" + "\n".join(hits)


def test_the_checks_can_fail(tmp_path):
    """The patterns catch what they are meant to (so the tests above are not vacuous)."""
    assert LINK.findall("see [x](docs/nope.md) and ![p](a.png)") == ["docs/nope.md", "a.png"]
    assert REPO_PATH.findall("bash scripts/test.sh over tests/") == ["scripts/test.sh", "tests/"]
    bad = ["see ../" + "shared/x", "per " + "STYLE.md", "rules in games" + ".md", "the Issue says"]
    assert all(any(p.search(line) for p in OUTSIDE) for line in bad)
    assert not any(p.search("rules in docs/games.md") for p in OUTSIDE)
