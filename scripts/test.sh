#!/usr/bin/env bash
# The project's test command (README.md). 8 simulated CPU devices stand in for a mesh.
# With arguments, runs only those test paths (e.g. `bash scripts/test.sh tests/rl`). The
# end-to-end studies on the built-in model (marker e2e, minutes each) run with `-m e2e`.
# Test files run in 2 worker processes (pytest-xdist, a file's tests stay in one worker so its
# module fixtures are built once; TEST_WORKERS=0 runs in one process): most of a test's time
# is single-threaded XLA compilation, so two workers keep both cores busy. The quickstart
# smoke run, the longest file, is listed first so that it does not start last.
set -euo pipefail
cd "$(dirname "$0")/.."
export XLA_FLAGS="${XLA_FLAGS:---xla_force_host_platform_device_count=8}"
if [ "$#" -eq 0 ]; then set -- tests/test_quickstart.py tests; fi
workers="${TEST_WORKERS:-2}"
if [ "$workers" = "0" ]; then exec python3 -m pytest -q "$@"; fi
exec python3 -m pytest -q -n "$workers" --dist loadfile "$@"
