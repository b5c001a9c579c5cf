#!/usr/bin/env bash
# Installs the system packages AgentTier needs on a Debian/Ubuntu machine (idempotent).
#   install-deps.sh          what `agenttier serve` needs (bubblewrap)
#   install-deps.sh test     also what the test suite needs (procps, python3-venv; chromium,
#                            Node.js 20+ and ui/node_modules for the web UI and its browser test)
set -euo pipefail
packages=(bubblewrap)
if [ "${1:-}" = "test" ]; then
  packages+=(procps iproute2 chromium)
  command -v node >/dev/null || packages+=(nodejs)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq || true
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi
command -v bwrap >/dev/null || { echo "bubblewrap (bwrap) is still missing" >&2; exit 1; }
if [ "${1:-}" = "test" ]; then
  node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
  if [ "$node_major" -lt 20 ]; then
    echo "the web UI needs Node.js 20 or newer (found: $(node --version 2>/dev/null || echo none))" >&2
    exit 1
  fi
  ui="$(dirname "$0")/../ui"
  if [ ! -f "$ui/node_modules/.package-lock.json" ] || [ "$ui/package-lock.json" -nt "$ui/node_modules/.package-lock.json" ]; then
    npm --prefix "$ui" ci --no-audit --no-fund
  fi
fi
