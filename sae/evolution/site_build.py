"""Building the feature browser from a model's analysis: prompts' final-token latents, the
contexts of each kept latent as token strings, the site, and its screenshot.

`prompt_rows` runs each prompt (the bundled `sae.evolution.texts.PROMPTS` plus the user's)
through the model and the SAEs and keeps, per layer, the most active latents on its final token.
`build_browser` writes `out/browser/` with `sae.evolution.browser` and, when chromium is
installed, `out/browser.png` through `jaxlens.runs.webdriver`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from jaxlens.runs import webdriver
from sae.evolution import browser, texts


def prompt_rows(src, text, prompts, cfg) -> list[dict[str, Any]]:
    rows = []
    for p in prompts:
        ids = text.window(text.encode(p)[-(cfg.seq_len - 1) :])
        lat = src.final_token_latents(ids)  # [L, N]
        active = []
        for layer in lat:
            order = [int(i) for i in np.argsort(-layer)[: cfg.prompt_latents] if layer[i] > 0]
            active.append([[i, round(float(layer[i]), 4)] for i in order])
        rows.append({"text": p, "active": active})
    return rows


def build_browser(
    out: Path, src, text, summary, nb, comms, prompts, cfg, *, title: str, screenshot: bool = True
) -> tuple[Path, Path | None]:
    """Write `out/browser/` (and `out/browser.png` when chromium is installed)."""
    rows = prompt_rows(src, text, list(texts.PROMPTS) + list(prompts or []), cfg)

    def context(index: int) -> tuple[list[str], int]:
        w, pos = src.token(index)
        lo = max(1, pos - 10)
        return [text.piece(t) for t in src.tokens[w, lo : pos + 3]], pos - lo

    keep = browser.latents_to_keep(rows, nb, summary.fires, per_layer=cfg.browser_latents)
    data = browser.site_data(
        title=title,
        prompts=rows,
        summary=summary,
        neighbours=nb,
        communities=comms,
        context=context,
        keep=keep,
        edge_min=cfg.edge_min,
    )
    index = browser.write_site(out / "browser", data)
    shot = None
    if screenshot and webdriver.find_chromium():
        shot = webdriver.screenshot_site(index, out / "browser.png", click=".node")
    return index, shot
