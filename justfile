# Developer recipes. The scripts they call work without `just` too.

# Run AgentTier with its embedded defaults on 127.0.0.1:8080.
run *ARGS:
    scripts/start.sh {{ARGS}}

# Build everything (debug).
build:
    cargo build --workspace --all-targets

# The whole test suite (installs what it needs).
test *ARGS:
    scripts/test.sh {{ARGS}}

# fmt, clippy, CRD drift, cargo deny.
lint:
    scripts/lint.sh

# Format the code.
fmt:
    cargo fmt --all

# Regenerate chart/crds from the Rust types.
crdgen:
    cargo run -p agenttier-crds --bin crdgen -- chart/crds

# Benchmarks: create→Running and exec round trip beside the bubblewrap floor.
bench:
    scripts/bench.sh

# The server container image (Dockerfile), tagged as the Helm chart's defaults expect.
image:
    scripts/build-image.sh

# Everything CI runs.
ci:
    .ci/run
