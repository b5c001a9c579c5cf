#!/usr/bin/env bash
# Quick start: builds AgentTier and runs it with its embedded defaults (local bubblewrap runtime,
# SQLite state, API and UI on http://127.0.0.1:8080). Extra arguments go to `agenttier serve`.
# The local runtime runs sandboxes as a dedicated non-root uid, which takes root to set up.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  exec sudo -E "$0" "$@"
fi
scripts/install-deps.sh
if command -v npm >/dev/null; then
  scripts/build-ui.sh
else
  echo "npm is not installed: building without the web UI (/ will say how to add it)" >&2
fi
cargo build --release -p agenttier
exec target/release/agenttier serve "$@"
