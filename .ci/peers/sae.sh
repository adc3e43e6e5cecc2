#!/usr/bin/env bash
# Peers for tests/sae and scripts/bench_sae.py: sae-lens (SAELens), in its own folder.
#
# sae-lens pins transformer-lens < 4, which other parts of the project may want at 4.x, so it is
# never installed into the main environment (see scripts/install_peer.sh). Tests and the
# benchmark append SAE_PEERS_DIR to sys.path only where they need SAELens.
set -euo pipefail
SAE_PEERS_DIR="${SAE_PEERS_DIR:-/opt/jaxlens-peers/saelens}"
SAE_LENS_VERSION="${SAE_LENS_VERSION:-6.54.12}"
bash "$(dirname "$0")/../../scripts/install_peer.sh" "sae-lens==$SAE_LENS_VERSION" "$SAE_PEERS_DIR"
