#!/usr/bin/env bash
# The project's test command (README.md). 8 simulated CPU devices stand in for a mesh.
set -euo pipefail
cd "$(dirname "$0")/.."
export XLA_FLAGS="${XLA_FLAGS:---xla_force_host_platform_device_count=8}"
exec python3 -m pytest -q tests "$@"
