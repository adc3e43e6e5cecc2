#!/usr/bin/env bash
# The project's test command (README.md). 8 simulated CPU devices stand in for a mesh.
# With arguments, runs only those test paths (e.g. `bash scripts/test.sh tests/rl`). The
# end-to-end studies on the built-in model (marker e2e, minutes each) run with `-m e2e`.
set -euo pipefail
cd "$(dirname "$0")/.."
export XLA_FLAGS="${XLA_FLAGS:---xla_force_host_platform_device_count=8}"
if [ "$#" -eq 0 ]; then set -- tests; fi
exec python3 -m pytest -q "$@"
