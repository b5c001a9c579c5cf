#!/usr/bin/env bash
# Installs the system packages AgentTier needs on a Debian/Ubuntu machine (idempotent).
#   install-deps.sh          what `agenttier serve` needs (bubblewrap)
#   install-deps.sh test     also what the test suite needs (procps, python3-venv)
set -euo pipefail
packages=(bubblewrap)
if [ "${1:-}" = "test" ]; then
  packages+=(procps iproute2)
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
