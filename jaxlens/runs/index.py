"""One `index.html` over several run folders: a study's results in one page that opens anywhere.

A multi-stage run (the quickstart: personality study, SAE evolution, SPIRAL self-play) writes one
`jaxlens.runs.RunFolder` per stage under a root folder. `write_index(root, stages, ...)` adds
`root/index.html`, built only from what the stage folders hold, so it can be rebuilt later:

- a header with the command, the versions, the start time and the time taken;
- the headline figures: the small tables each `Stage` carries (built by the caller from what the
  stage function returned);
- one section per stage: its status and time, links to its `report.md` files (a stage may hold
  several run folders, one per sub-stage) and any extra pages (the feature browser), each
  `summary.json` as a table, and every PNG under its folder embedded as a `data:` URI.

The page is self-contained: images are inline and links are relative paths that resolve from
`file://`, so the folder can be zipped, copied or opened from disk without a server. Every
string that reaches the page goes through `html.escape`; links are URL-quoted. `text_table`
renders the same headline tables for the terminal.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import html
import json
import math
import textwrap
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jaxlens.runs.folder import format_duration

__all__ = [
    "IndexPageError",
    "Stage",
    "Table",
    "figures",
    "format_value",
    "html_table",
    "png_data_uri",
    "run_folders",
    "table_html",
    "table_text",
    "text_table",
    "write_index",
]

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
STATUSES = ("ok", "failed", "skipped")


class IndexPageError(ValueError):
    """A stage description that cannot be rendered (bad status, a link outside the root)."""


@dataclasses.dataclass(frozen=True)
class Table:
    """A small headline table: `rows` are dicts (columns in first-seen key order).

    `note` is one plain-text sentence or two shown under the table: how to read it (sample
    sizes, what a figure near zero means).
    """

    caption: str
    rows: tuple[Mapping[str, Any], ...]
    note: str = ""

    def __post_init__(self):
        if not all(isinstance(r, Mapping) for r in self.rows):
            raise IndexPageError(f"Table {self.caption!r}: rows must be dicts")
        object.__setattr__(self, "rows", tuple(self.rows))


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage of a multi-stage run, as the index shows it.

    Attributes:
        name: short id (used as the HTML anchor), e.g. "sae".
        title: heading, e.g. "SAE features across layers".
        folder: the stage's run folder, relative to the index's root.
        status: "ok", "failed" or "skipped".
        seconds: wall time the stage took.
        tables: headline tables (shown at the top and in the stage's section).
        links: extra `(label, path relative to the root)` links, e.g. the feature browser.
        error: what went wrong, for a failed stage.
    """

    name: str
    title: str
    folder: str
    status: str = "ok"
    seconds: float = 0.0
    tables: tuple[Table, ...] = ()
    links: tuple[tuple[str, str], ...] = ()
    error: str | None = None

    def __post_init__(self):
        if self.status not in STATUSES:
            raise IndexPageError(f"Stage {self.name!r}: status must be one of {STATUSES}, "
                              f"got {self.status!r}")  # fmt: skip
        object.__setattr__(self, "tables", tuple(self.tables))
        object.__setattr__(self, "links", tuple(tuple(x) for x in self.links))


def format_value(value: Any) -> str:
    """A cell: floats to 3 significant decimals, None as '-', lists joined."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.3f}" if abs(value) < 1000 else f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(format_value(v) for v in value)
    if isinstance(value, Mapping):
        return json.dumps(value, default=str)
    return str(value)


def _columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    columns: list[str] = []
    for row in rows:
        columns += [str(k) for k in row if str(k) not in columns]
    return columns


def _as_rows(obj: Any) -> list[Mapping[str, Any]]:
    """summary.json content as rows: a dict becomes figure/value rows."""
    if isinstance(obj, Mapping):
        return [{"figure": k, "value": v} for k, v in obj.items()]
    if isinstance(obj, list) and all(isinstance(r, Mapping) for r in obj):
        return obj
    return [{"value": obj}]


def text_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Rows as an aligned plain-text table (for the terminal)."""
    columns = _columns(rows)
    cells = [[format_value({str(k): v for k, v in r.items()}.get(c)) for c in columns]
             for r in rows]  # fmt: skip
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    line = lambda parts: "  ".join(p.ljust(w) for p, w in zip(parts, widths, strict=True)).rstrip()  # noqa: E731
    out = [line(columns), line(["-" * w for w in widths])]
    return "\n".join([*out, *(line(row) for row in cells)]).rstrip()


def html_table(rows: Sequence[Mapping[str, Any]], caption: str | None = None) -> str:
    """Rows as an HTML table, every cell escaped."""
    columns = _columns(rows)
    e = html.escape
    head = "".join(f"<th>{e(c)}</th>" for c in columns)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td>{e(format_value({str(k): v for k, v in r.items()}.get(c)))}</td>" for c in columns
        )
        + "</tr>"
        for r in rows
    )
    cap = f"<caption>{e(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def table_html(table: Table) -> str:
    """A headline `Table` as HTML: the table, then its note (escaped)."""
    note = f'<p class="note">{html.escape(table.note)}</p>' if table.note else ""
    return html_table(table.rows, table.caption) + note


def table_text(table: Table) -> str:
    """A headline `Table` for the terminal: caption, aligned rows, then its note (wrapped)."""
    note = [textwrap.fill(table.note, width=100)] if table.note else []
    return "\n".join([table.caption, text_table(table.rows), *note])


def _href(root: Path, target: Path) -> str:
    rel = target.resolve().relative_to(root.resolve())
    return html.escape(urllib.parse.quote(rel.as_posix()), quote=True)


def _inside(root: Path, rel: str) -> Path:
    target = (root / rel).resolve()
    if not target.is_relative_to(root.resolve()):
        raise IndexPageError(f"link {rel!r} points outside the index root {str(root)!r}")
    return target


def png_data_uri(path: Path) -> str:
    """`data:image/png;base64,...` for a PNG file (FileNotFoundError if it is not one)."""
    data = Path(path).read_bytes()
    if not data.startswith(PNG_MAGIC):
        raise FileNotFoundError(f"{path}: expected a PNG file (bad signature)")
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def figures(folder: Path) -> list[Path]:
    """Every PNG under `folder`, top-level first, then by path."""
    found = [p for p in Path(folder).rglob("*.png") if p.is_file()]
    return sorted(found, key=lambda p: (len(p.relative_to(folder).parts), str(p)))


def run_folders(folder: Path) -> list[Path]:
    """The run folders under (and including) `folder`: directories holding a `report.md`,
    shallowest first. A stage may write one, or one per sub-stage."""
    found = [p.parent for p in Path(folder).rglob("report.md") if p.is_file()]
    return sorted(found, key=lambda p: (len(p.relative_to(folder).parts), str(p)))


def _stage_links(root: Path, stage: Stage, folder: Path) -> list[str]:
    e = html.escape
    items = []
    for run in run_folders(folder):
        label = (run.relative_to(folder) / "report.md").as_posix()
        items.append(f'<a href="{_href(root, run / "report.md")}">{e(label)}</a>')
    for label, rel in stage.links:
        target = _inside(root, rel)
        if target.exists():
            items.append(f'<a href="{_href(root, target)}">{e(label)}</a>')
    return items


def _stage_html(root: Path, stage: Stage) -> str:
    e = html.escape
    folder = _inside(root, stage.folder)
    present = folder.is_dir()
    parts = [f'<section id="{e(stage.name, quote=True)}"><h2>{e(stage.title)}</h2>']
    parts.append(f'<p class="status {e(stage.status, quote=True)}">{e(stage.status)} in '
                 f"{e(format_duration(stage.seconds))} &middot; folder "
                 f"<code>{e(stage.folder)}/</code></p>")  # fmt: skip
    if stage.error:
        parts.append(f'<pre class="error">{e(stage.error)}</pre>')
    links = _stage_links(root, stage, folder) if present else []
    if links:
        parts.append('<p class="links">' + " &middot; ".join(links) + "</p>")
    for table in stage.tables:
        parts.append(table_html(table))
    for run in run_folders(folder) if present else []:
        path = run / "summary.json"
        summary = json.loads(path.read_text()) if path.is_file() else None
        if summary:
            caption = path.relative_to(folder).as_posix()
            parts.append(html_table(_as_rows(summary), caption))
    for png in figures(folder) if present else []:
        rel = png.relative_to(folder).as_posix()
        parts.append(f'<figure><img src="{png_data_uri(png)}" alt="{e(rel, quote=True)}">'
                     f"<figcaption>{e(rel)}</figcaption></figure>")  # fmt: skip
    parts.append("</section>")
    return "\n".join(parts)


_CSS = """
body{font:15px/1.45 system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222}
h1{margin-bottom:.2em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
pre{background:#f4f4f4;padding:.6em;overflow-x:auto;white-space:pre-wrap}
table{border-collapse:collapse;margin:.8em 0;font-size:14px}
caption{text-align:left;font-weight:600;padding:.3em 0}
td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}th{background:#f0f0f0}
figure{margin:1em 0}img{max-width:100%;border:1px solid #ddd}
figcaption{font-size:13px;color:#555}
.status.ok{color:#1a7f37}.status.failed{color:#b42318}.status.skipped{color:#777}
.error{color:#b42318}.headline{display:flex;flex-wrap:wrap;gap:1.5em}
nav a{margin-right:1em}.note{font-size:13px;color:#555;max-width:38em;margin-top:-.3em}
"""


def write_index(
    root: str | Path,
    stages: Sequence[Stage],
    *,
    title: str,
    command: str,
    versions: Mapping[str, str],
    started: datetime.datetime | str,
    seconds: float,
    intro: str = "",
    headline_figure: str | Path | None = None,
) -> Path:
    """Write `root/index.html` for `stages` (see the module docstring); returns its path.

    `headline_figure` (a PNG under `root`) is shown above the headline tables; `intro` is a
    plain-text paragraph under the title.
    """
    root = Path(root)
    e = html.escape
    started_text = started if isinstance(started, str) else started.isoformat(timespec="seconds")
    nav = "".join(f'<a href="#{e(s.name, quote=True)}">{e(s.title)}</a>' for s in stages)
    head = [
        f"<h1>{e(title)}</h1>",
        f"<p>{e(intro)}</p>" if intro else "",
        f"<nav>{nav}</nav>",
        "<h2>Run</h2>",
        f"<pre>{e(command)}</pre>",
        html_table(
            [
                {
                    "started": started_text,
                    "time taken": format_duration(seconds),
                    **{k: v for k, v in versions.items()},
                }
            ]  # fmt: skip
        ),
        '<h2 id="headline">Headline figures</h2>',
    ]
    if headline_figure is not None:
        png = _inside(root, str(headline_figure))
        head.append(f'<figure><img src="{png_data_uri(png)}" alt="headline figures"></figure>')
    boxes = [
        f"<div><h3>{e(s.title)}</h3>" + "".join(table_html(t) for t in s.tables)
        + (f'<p class="status {e(s.status, quote=True)}">{e(s.status)}</p>'
           if s.status != "ok" else "") + "</div>"
        for s in stages
    ]  # fmt: skip
    head.append('<div class="headline">' + "".join(boxes) + "</div>")
    body = "\n".join([*head, *(_stage_html(root, s) for s in stages)])
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{e(title)}</title><style>{_CSS}</style></head>\n<body>\n{body}\n</body></html>\n"
    )
    path = root / "index.html"
    path.write_text(page, encoding="utf-8")
    return path
