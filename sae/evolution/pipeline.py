"""`run_study`: the whole cross-layer analysis of one model, into a run folder.

    model -> SAEs on every layer (trained, or SAELens folders) -> first pass (maxima, contexts)
    -> pairwise pass (all measures, all adjacent pairs, blocked, resumable) -> lineage
    (turnover at 0.95 / 0.5 / 0.4, AND / OR, vanished-or-unrepresented) -> graph and
    communities -> feature browser (+ a screenshot when chromium is installed) -> report.

The run folder (`jaxlens.runs.RunFolder`) holds `config.json`, `metrics.jsonl`, `turnover.json`,
`and_or.json`, `unrepresented.json`, `sae_metrics.json`, `graph.json` (node-link),
`communities.json`, `stats/` (neighbour lists, resumable state), `saes/` (SAELens folders of
trained SAEs), `browser/` (open `browser/index.html`), `browser.png`, the figures and
`report.md`. `run_study` returns the headline figures: SAE explained variance per layer and the
turnover per layer pair.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

import jaxlens
import jaxlens.runs
import sae
from sae.evolution import (
    codes,
    graph,
    lineage,
    model_source,
    site_build,
    stats,
    store,
    stream,
)
from sae.evolution.config import EvolutionConfig

BINARY_MEASURES = ("jaccard", "sufficiency", "necessity", "mutual_info")


def _unrepresented(src, nb, summary, sae_params, classes, limit: int = 256) -> list[dict]:
    """Per pair: the vanished live latents' error-projection ratio (module docstring of lineage)."""
    checks = []
    for p, c in enumerate(classes):
        idx = np.flatnonzero(c["vanished"] & (summary.fires[p] > 0))[:limit]
        checks.append((idx, lineage.ProjectionStats(np.asarray(sae_params[p]["W_dec"])[idx])))
    for lat, err in src.with_errors():
        for p, (idx, proj) in enumerate(checks):
            if len(idx):
                proj.update(lat[p][:, idx], err[p + 1])
    rows = []
    for p, (idx, proj) in enumerate(checks):
        res = proj.result() if len(idx) else {"ratio": np.zeros(0), "unrepresented": []}
        rows.append(
            {
                "pair": f"{p}->{p + 1}",
                "vanished_checked": len(idx),
                "unrepresented": int(np.sum(res["unrepresented"])),
                "median_ratio": float(np.median(res["ratio"])) if len(idx) else 0.0,
            }
        )
    return rows


def _ev_figure(ev: list[float]):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    ax.bar(range(len(ev)), ev)
    ax.set_xlabel("layer")
    ax.set_ylabel("explained variance")
    ax.set_ylim(min(0.0, min(ev)), 1.0)
    return fig


def _saes(out: Path, cfg, saes, model, tokens, run_folder):
    """SAELens folders if given; else trained ones (reused from `out/saes/` when complete)."""
    if saes:
        return model_source.load_saes(list(saes), model.config)
    folders = [out / "saes" / f"layer{i}" for i in range(model.config.n_layers)]
    if all((f / "cfg.json").exists() for f in folders):
        return model_source.load_saes(folders, model.config)
    log = None if run_folder is None else lambda step, s: run_folder.log({"sae_step": step, **s})
    sae_cfgs, sae_params = model_source.train_saes(
        model,
        tokens,
        expansion=cfg.expansion,
        k=cfg.k,
        steps=cfg.sae_steps,
        batch_size=cfg.sae_batch,
        seed=cfg.seed,
        callback=log,
    )
    for folder, c, p in zip(folders, sae_cfgs, sae_params, strict=True):
        sae.save_saelens(folder, c, p)
    return sae_cfgs, sae_params


def held_out_windows(n_windows: int, batch: int) -> int:
    """How many leading windows trained SAEs never see: their metrics are measured there."""
    return min(batch, n_windows // 4)


def _sae_rows(src, sae_cfgs, sae_params) -> list[dict[str, Any]]:
    """Explained variance, L0 and dead fraction per layer, on the held-out leading windows."""
    held_out = held_out_windows(len(src.tokens), src.batch)
    sample = np.asarray(src.residuals(src.tokens[:held_out]))
    rows = []
    for i, (c, p) in enumerate(zip(sae_cfgs, sae_params, strict=True)):
        m = sae.metrics(p, sample[i], config=c)
        rows.append(
            {
                "layer": i,
                "explained_variance": m.explained_variance,
                "l0": m.l0,
                "dead_fraction": m.dead_fraction,
            }
        )
    return rows


def _statistics(src, out: Path, cfg, sae_params, mesh, progress):
    """First pass (kept in `stats/first_pass.npz`), the resumable pairwise pass (`stats/`) and
    one pass of the binary measures per extra threshold (`stats/threshold_<t>/`), all reading
    the codes cache (`codes/`) when `cfg.cache_codes`."""
    if cfg.cache_codes:
        src = codes.CodeCache(src, folder=out / "codes")
    first = out / "stats" / "first_pass.npz"
    if first.exists():
        summary = store.load_summary(first)
    else:
        summary = stream.first_pass(
            src, top_contexts=cfg.top_contexts, mesh=mesh, progress=progress
        )
        first.parent.mkdir(parents=True, exist_ok=True)
        store.save_summary(first, summary)
    graphs = (cfg.edge_measure, *cfg.extra_graphs) if cfg.full_edges else ()
    decoders = np.stack([np.asarray(p["W_dec"]) for p in sae_params])
    passes = [(out / "stats", stats.MEASURES, cfg.threshold)]
    passes += [
        (out / "stats" / f"threshold_{t:g}", BINARY_MEASURES, t) for t in cfg.extra_thresholds
    ]
    for folder, measures, threshold in passes:
        options = stream.PassOptions(
            measures=measures,
            threshold=threshold,
            block=cfg.block,
            top_k=cfg.top_k,
            sparse_cap=cfg.sparse_cap,
            accumulate=cfg.accumulate,
            edge_measures=tuple(m for m in graphs if m in measures),
            edge_min=cfg.edge_min,
        )
        nb, _ = stream.pair_pass(
            src, summary, options, decoders=decoders, mesh=mesh, out_dir=folder, progress=progress
        )
        if folder == out / "stats":
            main = nb
    if cfg.extra_thresholds:  # which threshold each measure's files used
        _save_thresholds(out, cfg)
    return summary, main


def _save_thresholds(out: Path, cfg: EvolutionConfig) -> None:
    """`stats/thresholds.json`: per folder, the activity threshold of its binary measures."""
    rows = {"stats": {m: cfg.threshold for m in BINARY_MEASURES}}
    for t in cfg.extra_thresholds:
        rows[f"stats/threshold_{t:g}"] = {m: t for m in BINARY_MEASURES}
    rows["raw activations"] = ["pearson", "cosine", "decoder_cosine"]
    (out / "stats" / "thresholds.json").write_text(json.dumps(rows, indent=2))


class Sources(NamedTuple):
    """What an analysis reads: the model, its text, the per-layer SAEs and the latent source."""

    model: jaxlens.LoadedModel
    text: model_source.Text
    latents: model_source.LayerSource
    sae_configs: list[Any]
    sae_params: list[Any]


def open_sources(
    model_dir: str | Path | None,
    out: Path,
    cfg: EvolutionConfig,
    *,
    text_file: str | Path | None = None,
    saes: list[str | Path] | None = None,
    mesh: Any = None,
    run_folder: jaxlens.runs.RunFolder | None = None,
) -> Sources:
    """The model (`model_source.open_model`), its text, the token windows (`out/corpus.txt`,
    written once), the SAEs (loaded, or trained and saved under `out/saes/`) and the latent
    source of a run folder."""
    model = model_source.open_model(model_dir, mesh=mesh)
    text = model_source.Text.for_model(model)
    corpus = out / "corpus.txt"
    if not corpus.exists():
        corpus.write_text(
            Path(text_file).read_text(encoding="utf-8")
            if text_file
            else model_source.corpus_text(cfg.n_docs, seed=cfg.seed),
            encoding="utf-8",
        )
    tokens = sae.load_tokens(
        corpus, seq_len=cfg.seq_len, tokenizer=text.encode, bos_token_id=text.bos
    )[: cfg.n_windows]
    batch = min(cfg.batch, len(tokens))
    train_tokens = tokens[held_out_windows(len(tokens), batch) :]
    sae_cfgs, sae_params = _saes(out, cfg, saes, model, train_tokens, run_folder)
    src = model_source.LayerSource(
        model, tokens, sae_cfgs, sae_params, batch=batch, include_bos=cfg.include_bos
    )
    return Sources(model, text, src, sae_cfgs, sae_params)


def _lineage(src, nb, summary, sae_params, run_folder) -> tuple[list[dict], list[dict]]:
    n_pairs = len(sae_params) - 1
    table = lineage.turnover(nb.row_values["pearson"], nb.col_values["pearson"], summary.fires)
    classes = [
        lineage.classify_top(
            nb.row_values["pearson"][p],
            nb.row_index["pearson"][p],
            nb.col_values["pearson"][p],
            threshold=0.95,
        )
        for p in range(n_pairs)
    ]
    found = [
        lineage.and_or_top(
            nb.col_values["necessity"][p],
            nb.col_index["necessity"][p],
            nb.col_values["sufficiency"][p],
            nb.col_index["sufficiency"][p],
        )
        for p in range(n_pairs)
    ]
    unrep = _unrepresented(src, nb, summary, sae_params, classes)
    for row, f in zip(table, found, strict=True):
        row["and"], row["or"] = len(f["and"]), len(f["or"])
    run_folder.save_json("turnover.json", table)
    run_folder.save_json(
        "and_or.json", [{k: {str(b): v for b, v in d.items()} for k, d in f.items()} for f in found]
    )
    run_folder.save_json("unrepresented.json", unrep)
    return table, unrep


def _one_graph(out: Path, cfg: EvolutionConfig, summary, nb, measure: str):
    """The feature graph of `measure`: from the full statistics' edges (`cfg.full_edges`) or
    from the top-k lists."""
    if cfg.full_edges:
        n_pairs = summary.max.shape[0] - 1
        edges = [store.load_edges(out / "stats", measure, p) for p in range(n_pairs)]
        return graph.edge_graph(
            edges, min_weight=cfg.edge_min, fires=summary.fires, measure=measure
        )
    return graph.feature_graph(
        nb.row_values[measure],
        nb.row_index[measure],
        min_weight=cfg.edge_min,
        fires=summary.fires,
        measure=measure,
    )


def _graph(out: Path, cfg: EvolutionConfig, summary, nb, run_folder):
    """The feature graph (`graph.json`) and its communities under every method
    (`communities.json`); the same for each of `cfg.extra_graphs` (`graph_<m>.json`,
    `communities_<m>.json`). Returns the first graph and its communities."""
    found = []
    for i, measure in enumerate((cfg.edge_measure, *cfg.extra_graphs)):
        g = _one_graph(out, cfg, summary, nb, measure)
        comms = {m: graph.communities(g, method=m, seed=cfg.seed) for m in graph.METHODS}
        tail = "" if i == 0 else f"_{measure}"
        graph.save_node_link(out / f"graph{tail}.json", g)
        run_folder.save_json(
            f"communities{tail}.json",
            {m: [[*n, c] for n, c in cm.items()] for m, cm in comms.items()},
        )
        found.append((g, comms))
    return found[0]


def _title(model: jaxlens.LoadedModel) -> str:
    return f"SAE features across layers: {model.path.name}"


def _report(run_folder, sae_rows, table, unrep, summary, g, comms, shot) -> None:
    """Figures, `summary.json` and `report.md` of a finished analysis."""
    ev = [r["explained_variance"] for r in sae_rows]
    run_folder.figure("explained_variance", _ev_figure(ev))
    run_folder.figure("turnover_sankey", lineage.sankey_figure(table))
    run_folder.summary(
        {
            "layers": len(sae_rows),
            "d_sae": int(summary.max.shape[1]),
            "tokens": summary.n_tokens,
            "graph_nodes": g.number_of_nodes(),
            "graph_edges": g.number_of_edges(),
            "louvain_communities": len(set(comms["louvain"].values())),
            "leiden_communities": len(set(comms["leiden"].values())),
            "mean_explained_variance": float(np.mean(ev)),
        }
    )
    run_folder.section("SAEs", jaxlens.runs.markdown_table(sae_rows))
    run_folder.section("Turnover (Pearson)", jaxlens.runs.markdown_table(table))
    run_folder.section("Vanished or unrepresented", jaxlens.runs.markdown_table(unrep))
    run_folder.section(
        "Feature browser",
        "Open `browser/index.html` in any browser."
        + ("\n\n![browser](browser.png)" if shot else ""),
    )
    run_folder.write_report("SAE features across layers")


def run_study(
    model_dir: str | Path | None,
    out_dir: str | Path,
    *,
    quick: bool = True,
    mesh: Any = None,
    saes: list[str | Path] | None = None,
    text_file: str | Path | None = None,
    prompts: list[str] | None = None,
    config: EvolutionConfig | None = None,
    screenshot: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """The whole analysis (module docstring) of `model_dir` (None: `jaxlens.BUILTIN_MODEL`);
    returns `{"explained_variance": [L], "turnover": [rows], "run_dir", "browser"}`. Rerunning
    into the same `out_dir` reuses the trained SAEs, the first pass and the finished pairwise
    blocks."""
    cfg = config or (EvolutionConfig.quick() if quick else EvolutionConfig.full())
    out = Path(out_dir)
    run_folder = jaxlens.runs.RunFolder(
        out,
        config={
            "config": cfg,
            "model_dir": model_dir,
            "saes": saes,
            "quick": quick,
            "text_file": text_file,
        },
        command=sys.argv,
        resume=True,
    )
    found = open_sources(
        model_dir, out, cfg, text_file=text_file, saes=saes, mesh=mesh, run_folder=run_folder
    )
    sae_rows = _sae_rows(found.latents, found.sae_configs, found.sae_params)
    run_folder.save_json("sae_metrics.json", sae_rows)
    summary, nb = _statistics(found.latents, out, cfg, found.sae_params, mesh, progress)
    table, unrep = _lineage(found.latents, nb, summary, found.sae_params, run_folder)
    g, comms = _graph(out, cfg, summary, nb, run_folder)
    index, shot = site_build.build_browser(
        out,
        found.latents,
        found.text,
        summary,
        nb,
        comms,
        prompts,
        cfg,
        title=_title(found.model),
        screenshot=screenshot,
    )
    _report(run_folder, sae_rows, table, unrep, summary, g, comms, shot)
    ev = [r["explained_variance"] for r in sae_rows]
    return {"explained_variance": ev, "turnover": table, "run_dir": str(out), "browser": str(index)}


def rebuild_browser(
    run_dir: str | Path, *, prompts: list[str] | None = None, screenshot: bool = True
) -> tuple[Path, Path | None]:
    """Rebuild `run_dir/browser/` from a finished `run_study` (e.g. with more prompts)."""
    out = Path(run_dir)
    saved = json.loads((out / "config.json").read_text())["config"]
    fields = {f.name for f in dataclasses.fields(EvolutionConfig)}
    cfg = EvolutionConfig(**{k: v for k, v in saved["config"].items() if k in fields})
    found = open_sources(saved.get("model_dir"), out, cfg, saes=saved.get("saes"))
    summary = store.load_summary(out / "stats" / "first_pass.npz")
    nb = store.load_neighbours(out / "stats")
    comms = {
        m: {(la, i): c for la, i, c in rows}
        for m, rows in json.loads((out / "communities.json").read_text()).items()
    }
    return site_build.build_browser(
        out,
        found.latents,
        found.text,
        summary,
        nb,
        comms,
        prompts,
        cfg,
        title=_title(found.model),
        screenshot=screenshot,
    )
