#!/usr/bin/env bash
# Runs the whole test suite: unit, actor, gateway and end-to-end tests against the real binary,
# real sandboxes, the published Python SDK and the web UI in a real browser (chromium). Builds the
# UI (embedded into the binary) and runs its component tests first. Installs what the tests need.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  exec sudo -E env "PATH=$PATH" "$0" "$@"
fi
scripts/install-deps.sh test
scripts/setup-python.sh
scripts/build-ui.sh
npm --prefix ui test
cargo build --workspace --all-targets
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi
