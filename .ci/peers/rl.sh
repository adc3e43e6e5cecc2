#!/usr/bin/env bash
# Test and benchmark peers of rl/: TextArena (the reference for tests/rl/test_rl_textarena.py)
# and pgx (scripts/bench_envs.py). Neither changes jax, numpy or transformers in the main
# environment (checked with `pip install --dry-run`); --no-deps on pgx keeps it that way.
set -euo pipefail
python3 -m pip install -q "textarena==0.7.4"
python3 -m pip install -q --no-deps "pgx==2.6.0" "svgwrite>=1.4"
