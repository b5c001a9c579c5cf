# syntax=docker/dockerfile:1
# The AgentTier server image for `agenttier serve --runtime kubernetes` (the Helm chart's default
# `image.repository`/`image.tag`): the `agenttier` binary with the web UI embedded, on a distroless
# runtime base (glibc, CA certificates, no shell, no package manager) as the non-root user
# 65532:65532 the chart's podSecurityContext runs it as. Build it with `scripts/build-image.sh`
# (or `just image`), which tags it as the chart expects; see docs/kubernetes.md.

ARG RUST_VERSION=1.95
ARG NODE_VERSION=20

# 1. The web UI (ui/dist), which gateway/build.rs embeds when it exists.
FROM docker.io/library/node:${NODE_VERSION}-bookworm-slim AS ui
WORKDIR /src/ui
COPY ui/package.json ui/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY ui/ ./
RUN npm run build

# 2. The release binary, linked against bookworm's glibc like the runtime base.
FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
COPY --from=ui /src/ui/dist ui/dist
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p agenttier --bin agenttier \
 && install -D -m 0755 target/release/agenttier /out/agenttier

# 3. The runtime: distroless cc (glibc + libgcc + CA certificates), user nonroot (65532).
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="agenttier" \
      org.opencontainers.image.description="AgentTier control plane (REST API, terminal, web UI, Kubernetes controller)" \
      org.opencontainers.image.source="https://github.com/agenttier/agenttier" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/agenttier /usr/local/bin/agenttier
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/agenttier"]
CMD ["serve", "--runtime", "kubernetes", "--listen-addr", "0.0.0.0:8080"]
