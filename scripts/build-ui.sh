#!/usr/bin/env bash
# Builds the web UI into ui/dist, which the next `cargo build` embeds into the agenttier binary
# (gateway/src/ui.rs). Needs Node.js 20+ and npm; installs ui/node_modules from the lockfile
# when it is missing or older than the lockfile. `npm run build` type-checks, bundles, writes
# gzipped copies and fails when the initial JavaScript is over its budget.
set -euo pipefail
cd "$(dirname "$0")/../ui"
if ! command -v npm >/dev/null; then
  echo "build-ui.sh: npm is missing; install Node.js 20+ (scripts/install-deps.sh test checks it)" >&2
  exit 1
fi
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
npm run build
