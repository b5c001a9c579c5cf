#!/usr/bin/env bash
# Builds the server image from the Dockerfile and tags it as the Helm chart's defaults expect:
# `<image.repository from chart/values.yaml>:<appVersion from chart/Chart.yaml>`.
#   scripts/build-image.sh               build with docker (BuildKit), else podman, else buildah
#   scripts/build-image.sh --print-tag   only print the tag (the chart tests compare it)
#   IMAGE=registry.example.com/agenttier:dev scripts/build-image.sh   another tag
# Loading it into a cluster (kind, k3d, containerd nodes) is described in docs/kubernetes.md.
set -euo pipefail
cd "$(dirname "$0")/.."
repository=$(sed -n '/^image:/,/^[^ ]/s/^  repository: *//p' chart/values.yaml | head -1)
version=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' chart/Chart.yaml)
if [ -z "$repository" ] || [ -z "$version" ]; then
  echo "build-image.sh: cannot read image.repository or appVersion from chart/" >&2
  exit 1
fi
tag=${IMAGE:-$repository:$version}
if [ "${1:-}" = "--print-tag" ]; then
  echo "$tag"
  exit 0
fi
if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
  DOCKER_BUILDKIT=1 docker build -t "$tag" .
elif command -v podman >/dev/null; then
  podman build -t "$tag" .
elif command -v buildah >/dev/null; then
  buildah build -t "$tag" .
else
  echo "build-image.sh: no container engine (a running docker, podman or buildah) on this machine" >&2
  exit 1
fi
echo "built $tag"
