#!/usr/bin/env bash
# Format, lints, generated-CRD drift and dependency policy (cargo deny).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo run --quiet -p agenttier-crds --bin crdgen -- chart/crds
if ! git diff --exit-code -- chart/crds; then
  echo "chart/crds is out of date: run 'just crdgen' and commit the result" >&2
  exit 1
fi
if ! cargo deny --version >/dev/null 2>&1; then
  cargo install --locked --quiet cargo-deny
fi
cargo deny check
