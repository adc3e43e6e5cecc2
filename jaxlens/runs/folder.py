"""Run folders: one directory per script run, readable by a person and by a program.

A `RunFolder` is made when a script starts and holds everything the run produced:

- `config.json`: the run's configuration (a dict, a dataclass or an argparse namespace), the
  command line, the versions of python/jax/flax/jaxlens and the start time, written at once so a
  crashed run still says what it was;
- `metrics.jsonl`: one JSON object a line, appended by `log` as the run goes;
- any `save_json` files and `figure` PNGs;
- `report.md` and `summary.json`, written by `write_report`: a title, the command, a short table
  of the figures that matter (`summary`), every figure embedded, free sections (`section`), the
  config and the elapsed time.

Values are made JSON-able on the way in (NumPy and JAX scalars and small arrays, dtypes, paths,
nested dataclasses), so scripts can log what they computed without converting it. `progress`
is the one progress bar scripts use: tqdm on stderr with a rate, so stdout stays for results.
`run_script(main)` runs a script's `main` so that this project's input errors end it with a
one-line message instead of a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.metadata
import json
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "RunFolder",
    "format_duration",
    "jsonable",
    "markdown_table",
    "progress",
    "resume_progress",
    "run_script",
    "versions",
]

_SMALL_ARRAY = 4096  # arrays up to this many elements are stored as lists, larger as a summary


def versions() -> dict[str, str]:
    """The versions that decide what a run computes: python, jax, jaxlib, flax, jaxlens."""
    out = {"python": platform.python_version()}
    for name in ("jax", "jaxlib", "flax", "jaxlens"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def jsonable(value: Any) -> Any:
    """`value` as plain JSON types: dicts, lists, str, int, float, bool, None."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, argparse.Namespace):
        return jsonable(vars(value))
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset, range)):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (np.dtype, type)) and _is_dtype_like(value):
        return np.dtype(value).name
    if hasattr(value, "__array__") and hasattr(value, "shape"):
        array = np.asarray(value)
        if array.size <= _SMALL_ARRAY:
            return array.tolist()
        return f"<array shape={list(array.shape)} dtype={array.dtype}>"
    return str(value)


def _is_dtype_like(value: Any) -> bool:
    try:
        np.dtype(value)
    except TypeError:
        return False
    return True


def _format_cell(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        text = str(value)
    elif isinstance(value, (float, np.floating)):
        text = f"{float(value):.4g}"
    elif isinstance(value, (int, np.integer)):
        text = str(int(value))
    else:
        text = value if isinstance(value, str) else json.dumps(jsonable(value))
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(rows: Mapping[str, Any] | list[Mapping[str, Any]]) -> str:
    """A Markdown table: a `{name: value}` dict as two columns, a list of dicts as one row each
    (columns in first-seen key order; a missing key leaves its cell empty)."""
    if isinstance(rows, Mapping):
        lines = ["| figure | value |", "| --- | --- |"]
        lines += [f"| {_format_cell(k)} | {_format_cell(v)} |" for k, v in rows.items()]
        return "\n".join(lines)
    columns: list[str] = []
    for row in rows:
        columns += [str(k) for k in row if str(k) not in columns]
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    for row in rows:
        cells = {str(k): v for k, v in row.items()}
        lines.append(
            "| " + " | ".join(_format_cell(cells[c]) if c in cells else "" for c in columns) + " |"
        )
    return "\n".join(lines)


def _command_line(command: Iterable[str] | str | None) -> str:
    if command is None:
        command = sys.argv
    if isinstance(command, str):
        return command
    parts = [str(p) for p in command]
    if parts and parts[0].endswith(".py"):
        parts = ["python3", *parts]
    return shlex.join(parts)


def _check_name(name: str, suffix: str) -> str:
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise ValueError(f"name must be a plain file name without '/', got {name!r}")
    return name if name.endswith(suffix) else name + suffix


class RunFolder:
    """One run's directory; see the module docstring for what it holds.

    `RunFolder(path, config=..., command=sys.argv)` makes the directory and writes `config.json`
    at once. `metrics.jsonl` is started empty unless `resume=True`, which appends to it.
    """

    def __init__(
        self,
        path: str | Path,
        config: Any = None,
        command: Iterable[str] | str | None = None,
        *,
        resume: bool = False,
    ):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.command = _command_line(command)
        self.config = jsonable(config) if config is not None else {}
        self.started = datetime.datetime.now(datetime.timezone.utc)
        self._t0 = time.monotonic()
        self._figures: dict[str, str | None] = {}
        self._sections: dict[str, str] = {}
        self._summary: dict[str, Any] | list[dict[str, Any]] | None = None
        self.save_json(
            "config.json",
            {
                "config": self.config,
                "command": self.command,
                "versions": versions(),
                "started": self.started.isoformat(timespec="seconds"),
            },
        )
        metrics = self.path / "metrics.jsonl"
        if not resume or not metrics.exists():
            metrics.write_text("")

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def elapsed(self) -> float:
        """Seconds since the folder was made."""
        return time.monotonic() - self._t0

    def log(self, record: Mapping[str, Any], *, echo: bool = False) -> None:
        """Append `record` as one line of `metrics.jsonl` (and print it to stdout if `echo`)."""
        line = json.dumps(jsonable(dict(record)))
        with open(self.path / "metrics.jsonl", "a") as f:
            f.write(line + "\n")
        if echo:
            print(line, flush=True)

    def save_json(self, name: str, obj: Any) -> Path:
        """Write `obj` (made JSON-able) to `name` in the folder, indented; returns the path."""
        path = self.path / _check_name(name, ".json")
        path.write_text(json.dumps(jsonable(obj), indent=2) + "\n")
        return path

    def figure(self, name: str, fig: Any, *, caption: str | None = None) -> Path:
        """Save a matplotlib figure as `name.png`, close it, and embed it in the report."""
        import matplotlib.pyplot as plt

        file = _check_name(name, ".png")
        path = self.path / file
        fig.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(fig)
        self._figures[file] = caption
        return path

    def summary(self, rows: Mapping[str, Any] | list[Mapping[str, Any]]) -> None:
        """The figures that matter: a `{name: value}` dict or a list of row dicts. Repeated calls
        merge (dicts) or extend (lists); put any second table in a `section`."""
        if isinstance(rows, Mapping):
            if isinstance(self._summary, list):
                raise ValueError(
                    "summary already holds rows (a list of dicts); put a name/value table in "
                    "section(title, markdown_table(values)) instead"
                )
            self._summary = {**(self._summary or {}), **jsonable(dict(rows))}
        elif isinstance(rows, list) and all(isinstance(r, Mapping) for r in rows):
            if isinstance(self._summary, dict):
                raise ValueError(
                    "summary already holds name/value pairs (a dict); put a table of rows in "
                    "section(title, markdown_table(rows)) instead"
                )
            self._summary = [*(self._summary or []), *(jsonable(dict(r)) for r in rows)]
        else:
            raise ValueError(
                f"summary rows must be a dict of name -> value or a list of dicts, "
                f"got {type(rows).__name__}"
            )

    def section(self, title: str, markdown: str) -> None:
        """A report section (Markdown body); a second call with the same title replaces it."""
        self._sections[title] = markdown.strip()

    def write_report(self, title: str | None = None) -> Path:
        """Write `report.md` and `summary.json`; may be called again to update them."""
        title = title or self.path.name
        seconds = self.elapsed()
        lines = [f"# {title}", "", "```bash", self.command, "```", ""]
        lines += [
            f"Started {self.started.isoformat(timespec='seconds')}, "
            f"ran {format_duration(seconds)}.",
            "",
        ]
        if self._summary:
            lines += ["## Summary", "", markdown_table(self._summary), ""]
        for file, caption in self._figures.items():
            stem = file.removesuffix(".png")
            lines += [f"## {stem}", "", f"![{stem}]({file})", ""]
            if caption:
                lines += [caption, ""]
        for section, body in self._sections.items():
            lines += [f"## {section}", "", body, ""]
        lines += ["## Config", "", "```json", json.dumps(self.config, indent=2), "```", ""]
        metrics = self.path / "metrics.jsonl"
        if metrics.exists() and metrics.stat().st_size:
            lines += ["Per-step records are in `metrics.jsonl`.", ""]
        report = self.path / "report.md"
        report.write_text("\n".join(lines))
        self.save_json("summary.json", self._summary if self._summary is not None else {})
        return report


def format_duration(seconds: float) -> str:
    """`42.0 s`, `3.5 min` or `2.10 h`: the one way run reports and index pages show a time."""
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def progress(
    iterable: Iterable | None = None,
    *,
    desc: str | None = None,
    unit: str = "it",
    total: int | None = None,
    **kwargs: Any,
):
    """A tqdm progress bar on stderr showing the rate (`unit`/s); usable as an iterator wrapper
    or, with `iterable=None` and `total`, by hand via `.update(n)` / `.set_postfix(...)`."""
    from tqdm import tqdm

    kwargs.setdefault("mininterval", 0.5 if sys.stderr.isatty() else 5.0)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, desc=desc, unit=unit, total=total, file=sys.stderr, **kwargs)


def resume_progress(bar, done: int) -> None:
    """Start a `progress` bar at `done` of its total, as when a run resumes from a checkpoint:
    it counts on from there and its rate counts only the steps run since."""
    bar.initial = bar.n = bar.last_print_n = int(done)
    bar.refresh()


_OWN_PACKAGES = ("jaxlens", "sae", "rl")


def _is_input_error(e: BaseException) -> bool:
    """One of the project's own error classes, or a missing file that its code reported (a
    plain `FileNotFoundError` raised in jaxlens, sae or rl, e.g. a roster path)."""
    if type(e).__module__.split(".")[0] in _OWN_PACKAGES:
        return True
    tb = e.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = "" if tb is None else str(tb.tb_frame.f_globals.get("__name__", ""))
    return isinstance(e, FileNotFoundError) and where.split(".")[0] in _OWN_PACKAGES


def run_script(main: Callable[[], int | None]) -> None:
    """Run a script's `main` and exit: with its return value when that is an int (a status, as
    `quickstart.py` returns), else 0 (a `main` may return its results to a calling test).

    An error of this project's own classes (a corrupt checkpoint, an unsupported config field, a
    roster without a column; all `ValueError` or `FileNotFoundError`), or a missing file its code
    reports, is a message for the user, not a bug: it ends the script with
    `<script>: error: <ErrorClass>: <message>` on stderr and exit status 2, as argparse does for
    a bad flag. Anything else keeps its traceback, and so does every error when the environment
    sets `JAXLENS_TRACEBACK=1`."""
    try:
        code = main()
    except (ValueError, FileNotFoundError) as e:
        if not _is_input_error(e) or os.environ.get("JAXLENS_TRACEBACK"):
            raise
        print(f"{Path(sys.argv[0]).name}: error: {type(e).__name__}: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    raise SystemExit(code if code is None or isinstance(code, int) else 0)
