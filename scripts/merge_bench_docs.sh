#!/usr/bin/env bash
# Rebuilds BENCHMARKS.md from the per-package sections in docs/bench/ (core, engine, sae, rl, studies).
set -euo pipefail
cd "$(dirname "$0")/.."
{
  cat <<'HEAD'
# Benchmarks

Every figure comes from a `scripts/bench_*.py` run that times the peer (HF transformers,
TransformerLens, SAELens, pgx, TextArena) and jaxlens on the same work in the same run; each
script ends with `RESULT <name> ours=<value> peer=<value> unit=<unit> ratio=<ours/peer>` lines,
the ratio oriented so that > 1 means jaxlens is better. `--quick` runs each in under a minute.

No GPU was lent to the sessions that produced these figures: they are CPU figures (2 cores,
24 GiB). The machine was shared with other jobs while several of them ran; each section says
how that was handled and how far the numbers can be trusted.

HEAD
  for part in core engine sae rl studies; do
    f="docs/bench/$part.md"
    if [ -f "$f" ]; then cat "$f"; echo; fi
  done
} > BENCHMARKS.md
