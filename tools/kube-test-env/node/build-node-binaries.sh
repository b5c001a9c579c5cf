#!/bin/bash
# Build kube-apiserver, kube-controller-manager, kube-scheduler, kubelet v1.20.2 from Debian bookworm's
# `kubernetes` source package with Debian's Go 1.19. Idempotent: binaries cached in $CACHE (outside any repo).
set -euo pipefail
# One cache root for both builds: build-apiserver.sh unpacks the same source tree into $K8S_CACHE/src,
# so a machine that built the apiserver first only compiles the node binaries here.
K8S_CACHE=${K8S_CACHE:-/var/cache/agenttier-k8s}
CACHE=${CACHE:-$K8S_CACHE/bin}
W=${W:-$K8S_CACHE}   # source work dir: $W/src (reused if already unpacked + patched)
GOCACHE_DIR=${GOCACHE_DIR:-$K8S_CACHE/gocache}
BINS="kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl"   # kubectl 1.20.2: version-matched client
HERE=$(cd "$(dirname "$0")/.." && pwd)
LEVEL_FILE=$CACHE/.patch-level
mkdir -p "$CACHE"
need=0; for b in $BINS; do [ -x "$CACHE/$b" ] || need=1; done
# The apiserver must be built at the current patch level (../patch-source.sh); the level is only
# known once the source is unpacked, so a cache without the stamp goes through the build below.
[ -f "$LEVEL_FILE" ] || need=1
if [ $need = 0 ] && [ -f "$W/src/Makefile" ] && [ "$(cat "$LEVEL_FILE")" = "$("$HERE/patch-source.sh" "$W/src")" ]; then
  echo "cached: $CACHE ($("$CACHE/kubelet" --version))"; exit 0
fi
S=$(date +%s)
apt-get install -y -q --no-install-recommends golang-go rsync make gcc libc6-dev golang-github-modern-go-reflect2-dev >/dev/null
if [ ! -f "$W/src/Makefile" ]; then
  mkdir -p "$W/apt/lists/partial" "$W/apt/sources.d" "$W/src"
  sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources > "$W/apt/sources.d/src.sources"
  APTO=(-o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts="$W/apt/sources.d" -o Dir::State::Lists="$W/apt/lists")
  apt-get "${APTO[@]}" update -q >/dev/null
  (cd "$W" && apt-get "${APTO[@]}" source --download-only kubernetes >/dev/null 2>&1)
  tar xzf "$W"/kubernetes_*.orig.tar.gz -C "$W/src" --strip-components=1
fi
LEVEL=$("$HERE/patch-source.sh" "$W/src")
# The apiserver holds the patched validation: rebuild it whenever the level changed.
[ "$(cat "$LEVEL_FILE" 2>/dev/null)" = "$LEVEL" ] || rm -f "$W/src/_output/bin/kube-apiserver"
mkdir -p "$W/home" "$GOCACHE_DIR"
cd "$W/src"
todo=""; for b in $BINS; do [ -x "_output/bin/$b" ] || todo="$todo cmd/$b"; done
if [ -n "$todo" ]; then
  env -u GOPATH HOME="$W/home" GOCACHE="$GOCACHE_DIR" GOPROXY=off GOFLAGS= make WHAT="${todo# }" GOLDFLAGS="-s -w"
fi
for b in $BINS; do install -m 0755 "_output/bin/$b" "$CACHE/$b"; done
echo "$LEVEL" > "$LEVEL_FILE"
echo "built in $(( $(date +%s) - S ))s -> $CACHE: $("$CACHE/kubelet" --version)"
