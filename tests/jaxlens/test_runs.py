"""Run folders: what a run writes (config, metrics, figures, report, summary), read back."""

import dataclasses
import json
import re
import sys
from pathlib import Path

import jax.numpy as jnp
import matplotlib
import numpy as np
import pytest

from jaxlens.runs import RunFolder, jsonable, markdown_table, progress, run_script

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Cfg:
    lr: float = 1e-3
    dtype: object = jnp.bfloat16
    out: Path = Path("runs/x")
    layers: tuple = (1, 2)


def test_config_json_has_config_command_versions_and_start(tmp_path):
    run = RunFolder(tmp_path / "r", config=Cfg(), command=["scripts/train.py", "--steps", "3"])
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    assert saved["config"] == {"lr": 1e-3, "dtype": "bfloat16", "out": "runs/x", "layers": [1, 2]}
    assert saved["command"] == "python3 scripts/train.py --steps 3"
    import flax
    import jax

    assert saved["versions"]["jax"] == jax.__version__
    assert saved["versions"]["flax"] == flax.__version__
    assert saved["versions"]["python"] == ".".join(map(str, sys.version_info[:3]))
    assert set(saved["versions"]) >= {"jaxlens", "jaxlib"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", saved["started"])
    assert run / "x.bin" == tmp_path / "r" / "x.bin"


def test_log_appends_jsonable_lines_and_restart_truncates(tmp_path):
    run = RunFolder(tmp_path, config={"a": 1})
    run.log({"step": np.int64(3), "loss": jnp.float32(0.5), "hist": np.arange(3)})
    run.log({"step": 4, "dtype": np.dtype("float16")})
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x) for x in lines] == [
        {"step": 3, "loss": 0.5, "hist": [0, 1, 2]},
        {"step": 4, "dtype": "float16"},
    ]
    RunFolder(tmp_path, config={"a": 1}, resume=True).log({"step": 5})
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 3
    RunFolder(tmp_path, config={"a": 1})
    assert (tmp_path / "metrics.jsonl").read_text() == ""


def test_report_has_title_command_summary_figures_sections_config(tmp_path):
    run = RunFolder(tmp_path, config={"steps": 10}, command="python3 scripts/x.py --quick")
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    run.figure("loss", fig, caption="Training loss.")
    run.summary({"final loss": 0.12345678, "steps": 10})
    run.summary({"dead latents": 0.0})
    run.section("Notes", "| a | b |\n| --- | --- |\n| 1 | 2 |")
    report = run.write_report("My run").read_text()

    assert report.startswith("# My run\n")
    assert "python3 scripts/x.py --quick" in report
    assert "| final loss | 0.1235 |" in report and "| dead latents | 0 |" in report
    assert "![loss](loss.png)" in report and "Training loss." in report
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "## Notes" in report and "| 1 | 2 |" in report
    config_block = report.split("## Config")[1].split("```json\n")[1].split("```")[0]
    assert json.loads(config_block) == {"steps": 10}
    assert re.search(r"ran \d+\.\d s", report)
    assert json.loads((tmp_path / "summary.json").read_text()) == {
        "final loss": 0.12345678,
        "steps": 10,
        "dead latents": 0.0,
    }
    assert plt.get_fignums() == []  # the figure was closed


def test_summary_rows_table_and_mixing_refused(tmp_path):
    run = RunFolder(tmp_path)
    run.summary([{"batch": 1, "ms": 2.5}, {"batch": 8, "ms": 9.0, "note": "a|b"}])
    with pytest.raises(ValueError, match="section"):
        run.summary({"x": 1})
    report = run.write_report().read_text()
    assert "| batch | ms | note |" in report
    assert "| 1 | 2.5 |  |" in report and "| 8 | 9 | a\\|b |" in report
    assert json.loads((tmp_path / "summary.json").read_text())[1]["note"] == "a|b"
    with pytest.raises(ValueError, match="dict of name"):
        run.summary("oops")


def test_bad_names_refused(tmp_path):
    run = RunFolder(tmp_path)
    with pytest.raises(ValueError, match="plain file name"):
        run.save_json("../escape.json", {})


def test_jsonable_large_arrays_are_summarised():
    assert jsonable(np.zeros((100, 100))) == "<array shape=[100, 100] dtype=float64>"
    assert markdown_table({"a": None}) == "| figure | value |\n| --- | --- |\n| a | None |"


def test_progress_counts_and_writes_a_rate_to_stderr(capsys):
    assert list(progress(range(5), desc="work", unit="game", mininterval=0)) == list(range(5))
    err = capsys.readouterr().err
    assert "work" in err and "game/s" in err


def test_run_script_turns_own_input_errors_into_one_line(capsys, monkeypatch):
    from jaxlens.hf.io import CheckpointNotFoundError

    def typo():
        raise CheckpointNotFoundError("/no/such/dir: checkpoint directory does not exist")

    monkeypatch.setattr(sys, "argv", ["train.py"])
    monkeypatch.delenv("JAXLENS_TRACEBACK", raising=False)
    with pytest.raises(SystemExit) as exit_:
        run_script(typo)
    assert exit_.value.code == 2
    assert capsys.readouterr().err == (
        "train.py: error: CheckpointNotFoundError: /no/such/dir: checkpoint directory does not "
        "exist\n"
    )
    monkeypatch.setenv("JAXLENS_TRACEBACK", "1")  # asked for the traceback: the error itself
    with pytest.raises(CheckpointNotFoundError):
        run_script(typo)


def test_run_script_keeps_other_errors_and_the_exit_code(monkeypatch):
    from jaxlens.personality import load_roster

    monkeypatch.delenv("JAXLENS_TRACEBACK", raising=False)
    with pytest.raises(ValueError, match="could not convert"):  # numpy's: a bug, not a typo
        run_script(lambda: float(np.float64("x")))
    with pytest.raises(FileNotFoundError):  # a missing file the script itself opened
        run_script(lambda: open("/no/such/file.txt"))
    with pytest.raises(SystemExit) as exit_:  # a missing file the library reports
        run_script(lambda: load_roster("/no/such/roster.csv"))
    assert exit_.value.code == 2
    with pytest.raises(SystemExit) as exit_:
        run_script(lambda: 3)
    assert exit_.value.code == 3
    with pytest.raises(SystemExit) as exit_:
        run_script(lambda: None)
    assert exit_.value.code is None
    with pytest.raises(SystemExit) as exit_:  # results returned to a caller are no exit status
        run_script(lambda: {"final training loss": 0.1})
    assert exit_.value.code == 0
