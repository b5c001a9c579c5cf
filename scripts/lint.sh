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
# Licenses, bans and sources are checked offline. The advisory database is fetched from GitHub;
# where GitHub is unreachable (as on the CI machines here) that check says so instead of failing.
cargo deny check bans licenses sources
if git ls-remote https://github.com/RustSec/advisory-db HEAD >/dev/null 2>&1; then
  cargo deny check advisories
else
  echo "cargo deny advisories: skipped, github.com (the RustSec advisory database) is unreachable" >&2
fi
