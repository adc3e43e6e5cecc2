#!/usr/bin/env bash
# Test and benchmark peers of rl/: TextArena (the reference for tests/rl/test_rl_textarena.py),
# pgx (scripts/bench_envs.py), math-verify (the math grader of rl.benchmarks, checked against in
# tests/rl/test_rl_benchmarks.py) and datasets (reads the benchmarks' JSONL / parquet files).
# None changes jax, numpy or transformers in the main environment (checked with
# `pip install --dry-run`); --no-deps on pgx keeps it that way.
# math-verify adds latex2sympy2_extended; datasets adds pandas, pyarrow, dill, multiprocess, xxhash.
set -euo pipefail
python3 -m pip install -q "textarena==0.7.4"
python3 -m pip install -q --no-deps "pgx==2.6.0" "svgwrite>=1.4"
python3 -m pip install -q "math-verify==0.9.0" "datasets==5.2.0"
