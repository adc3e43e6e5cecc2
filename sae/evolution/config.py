"""`EvolutionConfig`: the sizes and settings of one cross-layer analysis run.

Presets: `quick()` (a smoke run), `full()` (a real one on the built-in model) and `paper()`
(the paper's setting: GPT-2 small's SAEs, 128-token windows with BOS, both activity thresholds,
every edge above 0.1, communities on the Pearson and Jaccard graphs). `sae.evolution.run_study`
takes one.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from sae.evolution import stats, stream


@dataclasses.dataclass(frozen=True, kw_only=True)
class EvolutionConfig:
    """Sizes of one analysis run (`quick()` for a smoke run, `full()` for a real one).

    Attributes:
        n_docs: corpus documents when no text is given.
        seq_len: tokens per window (with BOS).
        n_windows: windows the statistics run over (at most what the corpus gives). Trained
            SAEs learn from all but the first `batch` of them (at most a quarter), on which
            `sae_metrics.json` measures their explained variance, L0 and dead fraction.
        expansion, k, sae_steps, sae_batch: TopK SAEs trained per layer (no SAELens folders).
        batch: windows per model forward in the statistics passes.
        block: earlier-side latents per pairwise block (None: all).
        threshold: activity threshold as a fraction of each latent's max (0: > 0).
        top_k, top_contexts: neighbours and top contexts kept per latent.
        sparse_cap: nonzero latents per token for the sparse pairwise update (None: dense;
            TopK SAEs: their k).
        accumulate: the pairwise sums, "dense", "sparse" (co-active pairs only) or "auto"
            (`sae.evolution.stream.PassOptions`); the same statistics either way.
        cache_codes: keep every batch's SAE codes under `codes/` of the run folder, so the
            model and the encoders run once for the first pass and every pairwise block.
        include_bos: whether the BOS position of each window enters the statistics.
        extra_thresholds: more activity thresholds (fractions of the max) whose binary
            measures (Jaccard, sufficiency, necessity, mutual information) are computed in the
            same run, each into `stats/threshold_<t>/`; `stats/thresholds.json` records which
            threshold every measure used.
        full_edges: the graphs' edges from the full statistics (every pair at or above
            `edge_min`, streamed to `stats/edges/`) instead of each latent's top-k.
        extra_graphs: more measures whose feature graph and communities are written
            (`graph_<measure>.json`, `communities_<measure>.json`), e.g. ("jaccard",).
        edge_measure, edge_min: the graph's edges.
        prompt_latents: latents per layer shown for a prompt (most active first).
        browser_latents: most frequent latents per layer kept in the browser besides the
            prompts' latents and their neighbours.
    """

    n_docs: int = 400
    seq_len: int = 64
    n_windows: int = 256
    expansion: int = 4
    k: int = 8
    sae_steps: int = 300
    sae_batch: int = 1024
    batch: int = 16
    block: int | None = None
    threshold: float = 0.0
    top_k: int = 8
    top_contexts: int = 6
    sparse_cap: int | None = None
    accumulate: str = "dense"
    cache_codes: bool = True
    include_bos: bool = False
    extra_thresholds: tuple[float, ...] = ()
    full_edges: bool = False
    extra_graphs: tuple[str, ...] = ()
    edge_measure: str = "pearson"
    edge_min: float = 0.1
    prompt_latents: int = 8
    browser_latents: int = 32
    seed: int = 0

    def __post_init__(self):
        if self.edge_measure not in stats.MEASURES:
            raise stats.MeasureError(
                f"edge_measure must be one of {stats.MEASURES}; got {self.edge_measure!r}"
            )
        for name in (
            "n_docs",
            "seq_len",
            "n_windows",
            "expansion",
            "k",
            "sae_steps",
            "sae_batch",
            "batch",
            "top_k",
            "top_contexts",
            "prompt_latents",
        ):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be an int >= 1; got {getattr(self, name)!r}")
        object.__setattr__(self, "extra_thresholds", tuple(self.extra_thresholds))
        object.__setattr__(self, "extra_graphs", tuple(self.extra_graphs))
        if any(not 0.0 <= t < 1.0 for t in (self.threshold, *self.extra_thresholds)):
            raise ValueError(
                f"threshold and extra_thresholds must be in [0, 1); got {self.threshold!r}, "
                f"{self.extra_thresholds!r}"
            )
        if any(m not in stats.TOKEN_MEASURES for m in self.extra_graphs):
            raise stats.MeasureError(
                f"extra_graphs must be among {stats.TOKEN_MEASURES}; got {self.extra_graphs!r}"
            )
        if self.accumulate not in stream.ACCUMULATE:
            raise ValueError(
                f"accumulate must be one of {stream.ACCUMULATE}; got {self.accumulate!r}"
            )
        if self.top_k < 3:
            raise ValueError(f"top_k must be >= 3 (AND/OR needs 'exactly two'); got {self.top_k}")

    @classmethod
    def quick(cls, **overrides: Any) -> EvolutionConfig:
        return cls(**overrides)

    @classmethod
    def full(cls, **overrides: Any) -> EvolutionConfig:
        base = dict(
            n_docs=20000,
            seq_len=128,
            n_windows=8192,
            expansion=16,
            k=32,
            sae_steps=20000,
            sae_batch=4096,
            batch=32,
            block=4096,
            top_k=16,
            top_contexts=10,
            browser_latents=64,
        )
        return cls(**{**base, **overrides})

    @classmethod
    def paper(cls, **overrides: Any) -> EvolutionConfig:
        """The paper's setting (docs/evolution.md, its table): windows of 128 tokens with BOS,
        10M tokens (the BOS position included, as the paper's code encodes every position),
        Pearson and cosine on raw activations, activity at > 0.2 x each latent's
        max and > 0 in one run, graph edges from the full statistics (every pair >= 0.1) with
        communities on the Pearson and the Jaccard graph, the accumulation chosen by sparsity
        and backend. SAE sizes are `full()`'s, for runs without SAELens folders."""
        base = dict(
            n_docs=20000,
            seq_len=128,
            n_windows=-(-10_000_000 // 128),  # 10M tokens, BOS included as the paper's code
            include_bos=True,
            expansion=16,
            k=32,
            sae_steps=20000,
            sae_batch=4096,
            batch=32,
            threshold=0.2,
            extra_thresholds=(0.0,),
            accumulate="auto",
            full_edges=True,
            extra_graphs=("jaccard",),
            edge_min=0.1,
            top_k=16,
            top_contexts=10,
            browser_latents=64,
        )
        return cls(**{**base, **overrides})
