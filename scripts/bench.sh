#!/usr/bin/env bash
# Benchmarks (release build): REST create→Running and exec round trip beside the bubblewrap
# floors measured in the same run. BENCH_RUNS sets the sample count (default 40).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  exec sudo -E env "PATH=$PATH" "$0" "$@"
fi
scripts/install-deps.sh
cargo build --release -p agenttier -p agenttier-integration-tests --bin agenttier --bin bench
AGENTTIER_BIN="$PWD/target/release/agenttier" target/release/bench
# Terminal echo latency and output throughput beside Jupyter's terminado (installed into
# .venv-tests), then file upload, download and archive throughput.
scripts/setup-python.sh
cargo build --release -p agenttier-integration-tests --bin bench_terminal
AGENTTIER_BIN="$PWD/target/release/agenttier" target/release/bench_terminal
