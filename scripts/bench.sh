#!/usr/bin/env bash
# Benchmarks (release build): REST create→Running and exec round trip beside the bubblewrap
# floors measured in the same run; terminal and file throughput; then the Kubernetes figures on
# the real one-node cluster (REST create → Pod Running, cold and from the warm pool, beside
# `kubectl apply` of the same PVC and Pod in the same run). BENCH_RUNS sets the local sample count
# (default 40), KUBE_BENCH_RUNS the Kubernetes one (default 10); BENCH_SKIP_KUBE=1 leaves the
# cluster out.
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
# Kubernetes: the single-node cluster (kubelet + containerd) from tools/kube-test-env, built once
# into /var/cache/agenttier-k8s and started here when it is not running (kube_bench asks
# scripts/kube-env.sh too, which is idempotent). It is left running for the next bench or test.
if [ "${BENCH_SKIP_KUBE:-0}" != 1 ]; then
  scripts/kube-env.sh start node
  cargo build --release -p agenttier-integration-tests --bin kube_bench
  AGENTTIER_BIN="$PWD/target/release/agenttier" target/release/kube_bench
fi
