"""The main job end to end: `scripts/quickstart.py --quick` on the built-in model, then its index.

One subprocess run (module fixture) into a temporary folder, then checks that every artifact
exists and is well-formed, that the headline figures the terminal and the index show are the
ones the stage folders hold, and that `index.html` opens in headless chromium from `file://`
with every image decoded and every link resolving. The index module's escaping and tables are
checked on their own first (cheap).
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import jaxlens
import jaxlens.personality
import jaxlens.runs
from jaxlens.runs import index as run_index
from jaxlens.runs import webdriver

REPO = Path(__file__).resolve().parent.parent
STAGES = ("personality", "sae", "spiral")
OUTPUTS = {  # one output per stage that is not a run-folder file
    "personality": "personality/probe/probes.npz",
    "sae": "sae/browser/index.html",
    "spiral": "spiral/policy/config.json",
}
EVIL = "<script>alert('x')</script> & \"quotes\""


# --- the index module alone ----------------------------------------------------------------


def _tiny_stage(root: Path, name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = jaxlens.runs.RunFolder(root / name, config={"evil": EVIL}, command=["x.py", EVIL])
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    folder.figure("curve", fig)
    folder.summary({EVIL: 0.5})
    folder.write_report(EVIL)


def test_index_escapes_every_string(tmp_path):
    _tiny_stage(tmp_path, "a")
    table = run_index.Table(EVIL, ({EVIL: EVIL},), note=EVIL)
    stage = run_index.Stage(name="a", title=EVIL, folder="a", error=EVIL, status="failed",
                            tables=(table,))  # fmt: skip
    page = run_index.write_index(tmp_path, [stage], title=EVIL, command=EVIL,
                                 versions={EVIL: EVIL}, started=EVIL, seconds=1.0,
                                 intro=EVIL).read_text()  # fmt: skip
    assert "<script" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &quot;quotes&quot;" in page
    assert page.count("<img ") == 1 and "data:image/png;base64," in page
    assert page.count('<p class="note">&lt;script&gt;') == 2  # headline box and stage section


def test_index_rejects_links_outside_root_and_non_png(tmp_path):
    _tiny_stage(tmp_path, "a")
    common = dict(title="t", command="c", versions={}, started="s", seconds=0)
    with pytest.raises(run_index.IndexPageError, match="outside"):
        outside = run_index.Stage(name="a", title="a", folder="a", links=(("x", "../x.html"),))
        run_index.write_index(tmp_path, [outside], **common)
    (tmp_path / "a" / "fake.png").write_text("not a png")
    with pytest.raises(FileNotFoundError, match="fake.png"):
        run_index.write_index(
            tmp_path, [run_index.Stage(name="a", title="a", folder="a")], **common
        )
    with pytest.raises(run_index.IndexPageError, match="status"):
        run_index.Stage(name="a", title="a", folder="a", status="done")


def test_text_table_aligns_columns():
    rows = [{"trait": "EXT", "rho": 0.51234}, {"trait": "AGR", "rho": -0.2, "extra": None}]
    lines = run_index.text_table(rows).splitlines()
    assert lines[0].split() == ["trait", "rho", "extra"]
    assert lines[2].split() == ["EXT", "0.512", "-"] and lines[3].split() == ["AGR", "-0.200", "-"]
    assert lines[2].index("0.512") == lines[3].index("-0.200") == lines[0].index("rho")
    note = "how to read it " * 20
    text = run_index.table_text(run_index.Table("cap", tuple(rows), note=note)).splitlines()
    assert text[0] == "cap" and text[1:5] == lines
    assert " ".join(text[5:]) == note.strip() and max(map(len, text[5:])) <= 100


# --- the quickstart run ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    if not Path(jaxlens.BUILTIN_MODEL, "config.json").is_file():
        pytest.fail(f"the built-in model is missing at {jaxlens.BUILTIN_MODEL} "
                    "(scripts/train_builtin.py writes it)")  # fmt: skip
    out = tmp_path_factory.mktemp("quickstart") / "run"
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # the README's plain command
    proc = subprocess.run([sys.executable, "scripts/quickstart.py", "--quick", "--out", str(out)],
                          cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=1800)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return out, proc.stdout


def _finite_numbers(obj, where: str) -> int:
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return 0
    if isinstance(obj, (int, float)):
        assert math.isfinite(obj), f"{where}: {obj}"
        return 1
    items = obj.items() if isinstance(obj, dict) else enumerate(obj)
    return sum(_finite_numbers(v, f"{where}/{k}") for k, v in items)


def test_every_artifact_is_well_formed(run):
    out, _ = run
    folders = run_index.run_folders(out)  # every folder holding a report.md
    for stage in STAGES:
        assert any(f.is_relative_to(out / stage) for f in folders), f"no run folder in {stage}/"
    for folder in folders:
        config = json.loads((folder / "config.json").read_text())
        assert config["versions"]["jax"] and config["command"]
        assert _finite_numbers(json.loads((folder / "summary.json").read_text()), str(folder))
        assert (folder / "report.md").read_text().startswith("# ")
        for line in (folder / "metrics.jsonl").read_text().splitlines():
            json.loads(line)
    pngs = sorted(out.rglob("*.png"))
    assert len(pngs) >= 6
    for png in pngs:
        with Image.open(png) as im:
            assert im.format == "PNG" and min(im.size) > 10
            im.load()
    for stage in STAGES:
        assert (out / OUTPUTS[stage]).is_file(), OUTPUTS[stage]


def _headline(out: Path) -> dict:
    return json.loads((out / "headline.json").read_text())


def test_headline_figures_are_the_stages_own(run):
    out, stdout = run
    head = _headline(out)
    assert set(head) == set(STAGES)
    sae_rows = json.loads((out / "sae" / "sae_metrics.json").read_text())
    ev = [r["explained variance"] for r in head["sae"][0]["rows"]]
    np.testing.assert_allclose(ev, [r["explained_variance"] for r in sae_rows])
    assert all(v <= 1.0 for v in ev)
    turnover = json.loads((out / "sae" / "turnover.json").read_text())
    for shown, raw in zip(head["sae"][1]["rows"], turnover, strict=True):
        assert shown["pair"] == raw["pair"] and shown["passed"] == raw["passed@0.95"]
        assert 0 <= shown["passed"] <= 1 and 0 <= shown["new"] <= 1
    evals = json.loads((out / "spiral" / "evals.json").read_text())
    overall = lambda when, game, opp: [r for r in evals[when] if r["game"] == game  # noqa: E731
                                       and r["role"] == "all" and r["opponent"] == opp]  # fmt: skip
    for row in head["spiral"][0]["rows"]:
        for when in ("before", "after"):
            (raw,) = overall(when, row["game"], "random")
            assert row[f"vs random {when}"] == raw["win"] and 0 <= raw["win"] <= 1
        (vs_start,) = overall("after", row["game"], "model")  # the trained policy vs its start
        assert row["vs start model after"] == vs_start["win"] and row["games"] == vs_start["n"] > 0
        assert not overall("before", row["game"], "model")  # the start against itself: not played
    assert "standard error" in head["spiral"][0]["note"]
    traits = {r["trait"] for r in head["personality"][0]["rows"]}
    assert traits == set(jaxlens.personality.TRAITS)
    for row in head["personality"][0]["rows"]:  # questionnaire steering beside forced choice
        assert {"steering shift", "questionnaire shift", "questionnaire with persona"} <= set(row)
    for stage in STAGES:
        for table in head[stage]:
            assert _finite_numbers(table["rows"], stage)
            assert table["caption"] in stdout  # the terminal ends with the same tables
            assert table["note"].split()[0] in stdout
    index = (out / "index.html").read_text()
    assert run_index.format_value(ev[0]) in index


def test_index_opens_from_file_with_every_link_and_image(run):
    if webdriver.find_chromium() is None:
        pytest.skip(
            "chromium and chromedriver are missing: bash .ci/peers/browser.sh installs them"
        )
    out, _ = run
    page = (out / "index.html").read_text()
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page), "index must be self-contained"
    pngs = [p for s in STAGES for p in (out / s).rglob("*.png")]
    with webdriver.Browser(height=1200) as b:
        b.open((out / "index.html").resolve().as_uri())
        images = b.run("return Array.from(document.images, i => [i.complete, i.naturalWidth])")
        assert len(images) == len(pngs) + 1  # every stage plot and the headline figure
        assert all(done and width > 0 for done, width in images), images
        links = b.run("return Array.from(document.querySelectorAll('a[href]'), a => a.href)")
        status = b.run(
            """return arguments[0].map(h => { const x = new XMLHttpRequest();
                 try { x.open('GET', h, false); x.send(); return x.responseText.length; }
                 catch (e) { return String(e); } });""",
            links,
        )
        assert all(isinstance(n, int) and n > 0 for n in status), list(
            zip(links, status, strict=True)
        )
        targets = {h.split("#")[0] for h in links}
        for folder in run_index.run_folders(out)[1:]:  # every stage's reports (not the root's)
            assert (folder / "report.md").resolve().as_uri() in targets, folder
        if "sae" in STAGES:
            browser = (out / "sae" / "browser" / "index.html").resolve().as_uri()
            assert browser in targets
            b.open(browser)
            assert b.run("return location.href") == browser  # not a chrome-error:// page


def test_paper_preset_on_a_short_context_model_fails_before_any_stage(tmp_path):
    """SPIRAL's 4096-token replies do not fit the built-in model's 2048 positions: the script
    says so at once (exit 2, one line) instead of after the personality and SAE stages."""
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "scripts/quickstart.py", "--preset", "paper", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "max_new_tokens=4096" in proc.stderr and "max_seq_len=2048" in proc.stderr
    assert not out.exists()
