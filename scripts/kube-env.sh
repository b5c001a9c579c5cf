#!/usr/bin/env bash
# Builds (once, cached in /var/cache/agenttier-k8s) and starts the real Kubernetes 1.20 the
# Kubernetes tests run against, from tools/kube-test-env/:
#   api   etcd + kube-apiserver + kube-controller-manager on loopback (ports 16443/12379): object-level
#         tests; Pods are stored but never run.
#   node  the single-node cluster with a real kubelet, containerd and bridge networking (ports
#         6443/2379/10250): end-to-end tests with real Pods.
# Usage:
#   scripts/kube-env.sh start [api|node|all]   idempotent; prints KUBECONFIG_API=… / KUBECONFIG_NODE=…
#   scripts/kube-env.sh stop  [api|node|all]
#   scripts/kube-env.sh status
# Concurrent callers (parallel test binaries) are serialised with a lock file (fd 9, closed for the
# daemons so they never hold it).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ENV_DIR=$ROOT/tools/kube-test-env
export K8S_CACHE=${K8S_CACHE:-/var/cache/agenttier-k8s}
API_RUN=${KUBE_API_RUN:-/var/tmp/agenttier-kube-api}
API_PORT=${KUBE_API_PORT:-16443}
ETCD_PORT=${KUBE_API_ETCD_PORT:-12379}
export KNODE_DATA=${KNODE_DATA:-/var/tmp/agenttier-knode}
LOG_DIR=$K8S_CACHE/logs
mkdir -p "$LOG_DIR"

usage() { sed -n '2,14p' "$0" >&2; exit 2; }

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

api_ready() {
  [ -f "$API_RUN/kubeconfig" ] && alive "$API_RUN/apiserver.pid" || return 1
  local token
  token=$(sed -n 's/^  user: {token: "\(.*\)"}$/\1/p' "$API_RUN/kubeconfig")
  curl -sk -m 2 -H "Authorization: Bearer $token" "https://127.0.0.1:$API_PORT/readyz" | grep -q '^ok'
}

start_api() {
  if api_ready; then echo "KUBECONFIG_API=$API_RUN/kubeconfig"; return; fi
  # A half-dead environment (a crashed apiserver, a stale etcd): stop what is left and start clean.
  RUN=$API_RUN "$ENV_DIR/stop.sh" || true
  rm -rf "$API_RUN"
  mkdir -p "$API_RUN"
  if ! env -u CACHE CACHE="$K8S_CACHE" "$ENV_DIR/build-apiserver.sh" >"$LOG_DIR/build-apiserver.log" 2>&1; then
    echo "building kube-apiserver failed; see $LOG_DIR/build-apiserver.log" >&2
    tail -20 "$LOG_DIR/build-apiserver.log" >&2
    exit 1
  fi
  env -u CACHE CACHE="$K8S_CACHE" RUN="$API_RUN" API_PORT="$API_PORT" ETCD_PORT="$ETCD_PORT" \
    setsid "$ENV_DIR/start.sh" >"$API_RUN/start.log" 2>&1 </dev/null 9>&-
  for _ in $(seq 100); do api_ready && break; sleep 0.1; done
  if ! api_ready; then
    echo "kube-apiserver did not become ready; logs in $API_RUN" >&2
    tail -20 "$API_RUN/apiserver.log" >&2 || true
    exit 1
  fi
  echo "KUBECONFIG_API=$API_RUN/kubeconfig"
}

stop_api() {
  [ -d "$API_RUN" ] || return 0
  RUN=$API_RUN "$ENV_DIR/stop.sh" || true
  rm -rf "$API_RUN"
}

node_ready() {
  local kc=$KNODE_DATA/kubeconfigs/admin.kubeconfig
  [ -f "$KNODE_DATA/run/started" ] && [ -f "$kc" ] && alive "$KNODE_DATA/run/kubelet.pid" || return 1
  "$K8S_CACHE/bin/kubectl" --kubeconfig "$kc" --request-timeout=3s get --raw /readyz >/dev/null 2>&1
}

start_node() {
  if node_ready; then echo "KUBECONFIG_NODE=$KNODE_DATA/kubeconfigs/admin.kubeconfig"; return; fi
  [ -d "$KNODE_DATA" ] && "$ENV_DIR/node/stop-cluster.sh" >/dev/null 2>&1 || true
  if ! env -u CACHE "$ENV_DIR/node/build-node-binaries.sh" >"$LOG_DIR/build-node.log" 2>&1; then
    echo "building the node binaries failed; see $LOG_DIR/build-node.log" >&2
    tail -20 "$LOG_DIR/build-node.log" >&2
    exit 1
  fi
  local kc
  if ! kc=$(env -u CACHE SKIP_BUILD=1 setsid "$ENV_DIR/node/start-cluster.sh" 2>"$LOG_DIR/start-node.err" </dev/null 9>&- | tail -1); then
    echo "the node cluster did not start; see $LOG_DIR/start-node.err and $KNODE_DATA/run/*.log" >&2
    tail -20 "$LOG_DIR/start-node.err" >&2
    exit 1
  fi
  echo "KUBECONFIG_NODE=$kc"
}

stop_node() {
  [ -d "$KNODE_DATA" ] || return 0
  "$ENV_DIR/node/stop-cluster.sh"
}

command=${1:-}; target=${2:-api}
case $target in api|node|all) ;; *) usage ;; esac
exec 9>/var/tmp/agenttier-kube-env.lock
flock 9
case $command in
  start)
    if [ "$target" = api ] || [ "$target" = all ]; then start_api; fi
    if [ "$target" = node ] || [ "$target" = all ]; then start_node; fi
    ;;
  stop)
    if [ "$target" = api ] || [ "$target" = all ]; then stop_api; fi
    if [ "$target" = node ] || [ "$target" = all ]; then stop_node; fi
    ;;
  status)
    if api_ready; then echo "api: running ($API_RUN/kubeconfig)"; else echo "api: stopped"; fi
    if node_ready; then echo "node: running ($KNODE_DATA/kubeconfigs/admin.kubeconfig)"; else echo "node: stopped"; fi
    ;;
  *) usage ;;
esac
