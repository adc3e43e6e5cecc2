"""sae.evolution: how SAE features evolve across layers (statistics, lineage, graph, browser).

From SAEs on every layer of a model (trained with `sae.fit` or loaded from SAELens folders):

- `sae.evolution.stats`: the sufficient statistics of latent pairs and the measures (Pearson,
  activation cosine, Jaccard, sufficiency, necessity, binary mutual information, decoder-weight
  cosine), dead latents giving 0;
- `sae.evolution.stream`: the passes over token batches (per-latent maxima and top contexts,
  then the pairwise sums in jitted blocks, sharded over a mesh, resumable), kept as top-k
  neighbour lists; `layer_pair_stats` is the dense entry point over the same machinery;
- `sae.evolution.coactive`: the pairwise sums over co-active pairs only (host, exact, no
  blocks), chosen by `PassOptions(accumulate="auto" | "dense" | "sparse")`;
- `sae.evolution.codes`: what a source yields (dense latents or sparse `Codes`) and
  `CodeCache`, which runs the model and the encoders once for every pass;
- `sae.evolution.lineage`: passed / vanished / new (`classify`), AND / OR (`and_or`), turnover
  tables and the Sankey-style figure, the vanished-or-unrepresented projection;
- `sae.evolution.graph`: the networkx feature graph (from top-k lists, or `edge_graph` from
  every pair above a threshold), Louvain and Leiden communities, node-link JSON;
- `sae.evolution.store`: the passes' on-disk state (atomic writes, resume, reading back);
- `sae.evolution.browser`: the static feature browser site; `site_build` fills it from a model's
  analysis (its screenshot through `jaxlens.runs.webdriver`'s headless chromium);
- `sae.evolution.model_source`: the model (`jaxlens.load_model`), its text, per-layer SAEs and
  the latent source;
- `sae.evolution.config`: `EvolutionConfig` and its presets (`quick`, `full`, `paper`);
- `sae.evolution.pipeline`: the study's entry point, `run_study(model_dir, out_dir, *, ...)`
  (exported here), everything from a model into a run folder, and
  `rebuild_browser`.
"""

from sae.evolution.config import EvolutionConfig
from sae.evolution.dense import layer_pair_stats
from sae.evolution.graph import (
    communities,
    edge_graph,
    feature_graph,
    node_link,
    save_node_link,
)
from sae.evolution.lineage import and_or, and_or_top, classify, classify_top, turnover
from sae.evolution.pipeline import rebuild_browser, run_study
from sae.evolution.stats import MEASURES, TOKEN_MEASURES, MeasureError
from sae.evolution.stream import (
    LatentSummary,
    Neighbours,
    PassError,
    PassOptions,
    first_pass,
    pair_pass,
)

__all__ = [
    "MEASURES",
    "TOKEN_MEASURES",
    "EvolutionConfig",
    "LatentSummary",
    "MeasureError",
    "Neighbours",
    "PassError",
    "PassOptions",
    "and_or",
    "and_or_top",
    "classify",
    "classify_top",
    "communities",
    "edge_graph",
    "feature_graph",
    "first_pass",
    "layer_pair_stats",
    "node_link",
    "pair_pass",
    "rebuild_browser",
    "run_study",
    "save_node_link",
    "turnover",
]
