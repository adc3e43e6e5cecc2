#!/usr/bin/env bash
# Peer for tests/sae/evolution's feature-browser test: Debian's headless chromium and its
# WebDriver (chromedriver). The test drives them with its own small WebDriver client (stdlib
# only), so no pip package is needed. Idempotent: does nothing when both are already installed.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null 2>&1; then
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
