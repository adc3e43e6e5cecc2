"""Run folders and what people read from them.

- `jaxlens.runs.folder`: `RunFolder` (one directory per script run: `config.json`,
  `metrics.jsonl`, figures, `report.md`, `summary.json`), `progress` bars with rates and
  `run_script`, which turns this project's input errors into one-line messages. Its public
  names are re-exported here (`jaxlens.runs.RunFolder`).
- `jaxlens.runs.index`: one self-contained `index.html` over several run folders (a multi-stage
  run's headline tables, reports and figures) and the same tables for the terminal.
- `jaxlens.runs.webdriver`: a small WebDriver client for headless chromium, to screenshot and
  test the pages the studies write.
"""

from jaxlens.runs.folder import (
    RunFolder,
    format_duration,
    jsonable,
    markdown_table,
    progress,
    resume_progress,
    run_script,
    versions,
)

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
