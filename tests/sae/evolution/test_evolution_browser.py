"""The feature browser in a real headless chromium over WebDriver, opened from file://: layer
rows for a prompt, the click panel's contexts and neighbours, search, and escaping (a context
holding `<script>alert(1)</script>` renders as text and opens no dialog)."""

from __future__ import annotations

import numpy as np
import pytest
from _evolution_ref import sparse_latents

from jaxlens.runs import webdriver
from sae import evolution
from sae.evolution import browser

pytestmark = pytest.mark.skipif(
    webdriver.find_chromium() is None,
    reason="chromium + chromedriver missing: run `bash .ci/peers/browser.sh`",
)

PAYLOAD = "<script>alert(1)</script>"
IMG = '<img src=x onerror="alert(2)">'
L, T, N = 3, 120, 10


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    rng = np.random.default_rng(0)
    acts = np.stack([sparse_latents(rng, T, N, density=0.4) for _ in range(L)])
    acts[1, :, 0] = acts[0, :, 3]  # a passed-through latent gives a strong edge 0/3 -> 1/0
    acts[2, :, 4] = acts[1, :, 0]
    source = lambda: iter([acts[:, :60], acts[:, 60:]])  # noqa: E731
    summary = evolution.first_pass(source, top_contexts=3)
    nb, _ = evolution.pair_pass(
        source, summary, evolution.PassOptions(measures=("pearson", "jaccard"), top_k=3)
    )
    g = evolution.feature_graph(nb.row_values["pearson"], nb.row_index["pearson"])
    comms = {m: evolution.communities(g, method=m) for m in ("louvain", "leiden")}
    words = [f"w{i}" for i in range(T)]
    words[int(summary.top_index[0, 3, 0])] = PAYLOAD  # latent 0/3's best context
    words[int(summary.top_index[0, 3, 1])] = IMG

    def context(i):
        lo = max(0, i - 4)
        return words[lo : i + 2], i - lo

    prompts = [
        {"text": "first " + PAYLOAD, "active": [[[3, 1.5], [1, 0.2]], [[0, 1.4]], [[4, 1.1]]]},
        {"text": "second prompt", "active": [[[2, 0.9]], [[5, 0.5], [6, 0.4]], []]},
    ]
    keep = browser.latents_to_keep(prompts, nb, summary.fires, per_layer=2)
    data = browser.site_data(
        title="test " + IMG,
        prompts=prompts,
        summary=summary,
        neighbours=nb,
        communities=comms,
        context=context,
        keep=keep,
    )
    out = tmp_path_factory.mktemp("site")
    return browser.write_site(out, data)


def test_browser_rows_panel_search_and_escaping(site, tmp_path):
    with webdriver.Browser() as b:
        b.open(site.resolve().as_uri())
        assert site.resolve().as_uri().startswith("file://")
        assert b.run("return document.body.getAttribute('data-ready')") == "1"
        rows = b.find_all(".row")
        assert len(rows) == L
        assert [b.text(e) for e in b.find_all('.row[data-layer="0"] .node')][0].startswith("3 ")
        assert int(b.run("return document.getElementById('edges').getAttribute('data-edges')")) >= 1

        b.click(b.find('.node[data-id="0/3"]'))
        panel = b.text(b.find("#panel"))
        assert "Latent 0/3" in panel
        assert len(b.find_all("#panel .ctx")) >= 2
        assert PAYLOAD in panel and IMG in panel  # shown as text
        assert len(b.find_all("#panel .ctx .hi")) >= 2  # the token highlighted
        nbs = [b.text(e) for e in b.find_all("#panel .nb")]
        assert any(t.startswith("1/0") for t in nbs), nbs
        assert b.alert_text() is None
        assert b.run("return document.querySelectorAll('script').length") == 2
        assert b.run("return document.querySelectorAll('img').length") == 0
        assert b.text(b.find("#prompt-text")) == "first " + PAYLOAD

        b.click(b.find(".nb"))  # a neighbour opens its own panel
        assert "Latent 1/" in b.text(b.find("#panel h2"))

        b.run(
            "var s = document.getElementById('prompt'); s.value = '1';"
            "s.dispatchEvent(new Event('change'));"
        )
        assert [b.text(e) for e in b.find_all('.row[data-layer="1"] .node')][0].startswith("5 ")

        b.type(b.find("#search"), "alert")
        hits = [b.text(e) for e in b.find_all("#search-results .node")]
        assert "0/3" in hits
        assert b.alert_text() is None
        png = b.screenshot(tmp_path / "browser.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
