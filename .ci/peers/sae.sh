#!/usr/bin/env bash
# Peers for tests/sae and scripts/bench_sae.py: sae-lens (SAELens), in its own folder.
#
# sae-lens pins transformer-lens < 4, which other parts of the project may want at 4.x, so it is
# never installed into the main environment. pip resolves sae-lens against the main environment
# (dry run), and only the packages that run would add are installed, without dependencies, into
# SAE_PEERS_DIR. Tests and the benchmark append that folder to sys.path (the main environment's
# jax, numpy, torch and transformers always win) only where they need SAELens.
set -euo pipefail
SAE_PEERS_DIR="${SAE_PEERS_DIR:-/opt/jaxlens-peers/saelens}"
SAE_LENS_VERSION="${SAE_LENS_VERSION:-6.54.12}"
if [ -f "$SAE_PEERS_DIR/.complete-$SAE_LENS_VERSION" ]; then
  exit 0
fi
report="$(mktemp)"
trap 'rm -f "$report"' EXIT
python3 -m pip install -q --dry-run --report "$report" "sae-lens==$SAE_LENS_VERSION" 2>/dev/null
mapfile -t reqs < <(python3 - "$report" <<'PY'
import json, sys
for item in json.load(open(sys.argv[1]))["install"]:
    print(f"{item['metadata']['name']}=={item['metadata']['version']}")
PY
)
mkdir -p "$SAE_PEERS_DIR"
python3 -m pip install -q --no-deps --upgrade --target "$SAE_PEERS_DIR" "${reqs[@]}" 2>&1 \
  | { grep -v "is ignored: it is neither" || true; }
touch "$SAE_PEERS_DIR/.complete-$SAE_LENS_VERSION"
