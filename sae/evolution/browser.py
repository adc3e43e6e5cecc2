"""The feature browser: a self-contained static site that opens from `file://` in any browser.

The site is four files: `index.html`, `style.css` and `app.js` (our own JavaScript, shipped in
`sae/evolution/site/`, no CDN and no third-party code) and `data.js`, which sets
`window.FEATURE_DATA` (a script, not a fetched JSON file, because browsers refuse `fetch` on
`file://`). The data:

    title, layers, measures, methods, edge_min
    latents: {"layer/latent": {layer, latent, max, density, community: {method: id},
              contexts: [{tokens: [str], hi: int, value}], next: {measure: [[latent, value]]},
              prev: {measure: [[latent, value]]}}}
    prompts: [{text, active: [[latent, activation], ...] per layer (final token)}]

Escaping: `app.js` builds every element with `textContent`, never `innerHTML`, so a context such
as `<script>alert(1)</script>` shows as text; `data.js` writes `<`, `>`, `&` and the JavaScript
line separators as `\\u` escapes, so no string can close a script or open a comment.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

SITE_FILES = ("index.html", "style.css", "app.js")
_JS_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def safe_json(obj: Any) -> str:
    """JSON that is also safe inside a script: no `<`, `>`, `&` or line separators."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    for raw, escaped in _JS_ESCAPES.items():
        text = text.replace(raw, escaped)
    return text


def write_site(path: str | Path, data: dict[str, Any]) -> Path:
    """Write the site (the shipped files plus `data.js`) into `path`; returns `index.html`."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    site = resources.files("sae.evolution") / "site"
    for name in SITE_FILES:
        with resources.as_file(site / name) as src:
            shutil.copyfile(src, path / name)
    (path / "data.js").write_text(
        "window.FEATURE_DATA = " + safe_json(data) + ";\n", encoding="utf-8"
    )
    return path / "index.html"


def _pairs(values: np.ndarray, index: np.ndarray) -> list[list]:
    return [[int(i), round(float(v), 4)] for v, i in zip(values, index, strict=True) if v > 0]


def latent_entry(
    layer: int,
    latent: int,
    *,
    summary: Any,
    neighbours: Any,
    communities: dict[str, dict[tuple[int, int], int]],
    context: Callable[[int], tuple[list[str], int]],
) -> dict[str, Any]:
    """One latent's record: stats, communities, contexts (token strings + highlight), neighbours."""
    n_layers = summary.max.shape[0]
    contexts = []
    for value, token in zip(
        summary.top_values[layer, latent], summary.top_index[layer, latent], strict=True
    ):
        if token >= 0 and value > 0:
            tokens, hi = context(int(token))
            contexts.append({"tokens": tokens, "hi": hi, "value": round(float(value), 4)})
    entry = {
        "layer": layer,
        "latent": latent,
        "max": round(float(summary.max[layer, latent]), 4),
        "density": float(summary.fires[layer, latent]) / max(summary.n_tokens, 1),
        "community": {m: c.get((layer, latent)) for m, c in communities.items()},
        "contexts": contexts,
        "next": {},
        "prev": {},
    }
    for m in neighbours.row_values:
        if layer < n_layers - 1:
            entry["next"][m] = _pairs(
                neighbours.row_values[m][layer, latent], neighbours.row_index[m][layer, latent]
            )
        if layer > 0:
            entry["prev"][m] = _pairs(
                neighbours.col_values[m][layer - 1, latent],
                neighbours.col_index[m][layer - 1, latent],
            )
    return entry


def latents_to_keep(
    prompts: Sequence[dict[str, Any]], neighbours: Any, fires: np.ndarray, *, per_layer: int
) -> set[tuple[int, int]]:
    """The prompts' active latents, their neighbours, and the `per_layer` most frequent."""
    keep = {
        (layer, int(lat))
        for p in prompts
        for layer, row in enumerate(p["active"])
        for lat, _ in row
    }
    for layer, lat in list(keep):
        for m in neighbours.row_values:
            if layer < fires.shape[0] - 1:
                keep |= {(layer + 1, int(b)) for b in neighbours.row_index[m][layer, lat]}
            if layer > 0:
                keep |= {(layer - 1, int(a)) for a in neighbours.col_index[m][layer - 1, lat]}
    for layer in range(fires.shape[0]):
        keep |= {
            (layer, int(i)) for i in np.argsort(-fires[layer])[:per_layer] if fires[layer, i] > 0
        }
    return keep


def site_data(
    *,
    title: str,
    prompts: Sequence[dict[str, Any]],
    summary: Any,
    neighbours: Any,
    communities: dict[str, dict[tuple[int, int], int]],
    context: Callable[[int], tuple[list[str], int]],
    keep: Iterable[tuple[int, int]],
    edge_min: float = 0.1,
) -> dict[str, Any]:
    """The `FEATURE_DATA` object (module docstring) for the latents in `keep`."""
    latents = {
        f"{layer}/{lat}": latent_entry(
            layer,
            lat,
            summary=summary,
            neighbours=neighbours,
            communities=communities,
            context=context,
        )
        for layer, lat in sorted(keep)
    }
    return {
        "title": title,
        "layers": int(summary.max.shape[0]),
        "measures": list(neighbours.row_values),
        "methods": list(communities) or ["none"],
        "edge_min": edge_min,
        "latents": latents,
        "prompts": [{"text": p["text"], "active": p["active"]} for p in prompts],
    }
