#!/usr/bin/env bash
# Installs a peer package into its own folder without touching the main environment:
#   bash scripts/install_peer.sh <requirement> <target-dir>
# pip resolves the requirement against the main environment (dry run); only the packages that
# would be added or changed go, without dependencies, into <target-dir>. Code that needs the
# peer appends <target-dir> to sys.path, so the main environment's packages always win.
# A marker file makes a second call with the same requirement a no-op.
set -euo pipefail
requirement="$1"
target="$2"
marker="$target/.complete-$(printf %s "$requirement" | tr -c 'A-Za-z0-9._-' '_')"
[ -f "$marker" ] && exit 0
report="$(mktemp)"
trap 'rm -f "$report"' EXIT
python3 -m pip install -q --dry-run --report "$report" "$requirement" 2>/dev/null
mapfile -t reqs < <(python3 - "$report" <<'PY'
import json, sys
for item in json.load(open(sys.argv[1]))["install"]:
    print(f"{item['metadata']['name']}=={item['metadata']['version']}")
PY
)
mkdir -p "$target"
if [ "${#reqs[@]}" -gt 0 ]; then
  python3 -m pip install -q --no-deps --upgrade --target "$target" "${reqs[@]}" 2>&1 \
    | { grep -v "is ignored: it is neither" || true; }
fi
touch "$marker"
