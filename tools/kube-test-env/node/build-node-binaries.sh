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
mkdir -p "$CACHE"
need=0; for b in $BINS; do [ -x "$CACHE/$b" ] || need=1; done
if [ $need = 0 ]; then echo "cached: $CACHE ($("$CACHE/kubelet" --version))"; exit 0; fi
S=$(date +%s)
apt-get install -y -q --no-install-recommends golang-go rsync make gcc libc6-dev golang-github-modern-go-reflect2-dev >/dev/null
if [ ! -f "$W/src/Makefile" ]; then
  mkdir -p "$W/apt/lists/partial" "$W/apt/sources.d" "$W/src"
  sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources > "$W/apt/sources.d/src.sources"
  APTO=(-o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts="$W/apt/sources.d" -o Dir::State::Lists="$W/apt/lists")
  apt-get "${APTO[@]}" update -q >/dev/null
  (cd "$W" && apt-get "${APTO[@]}" source --download-only kubernetes >/dev/null 2>&1)
  tar xzf "$W"/kubernetes_*.orig.tar.gz -C "$W/src" --strip-components=1
  # vendored modern-go/reflect2 v1.0.1 segfaults under Go>=1.18; use Debian's v1.0.2
  R="$W/src/vendor/github.com/modern-go/reflect2"; rm -rf "$R"; mkdir -p "$R"
  cp /usr/share/gocode/src/github.com/modern-go/reflect2/*.go /usr/share/gocode/src/github.com/modern-go/reflect2/*.s "$R/"
fi
mkdir -p "$W/home" "$GOCACHE_DIR"
cd "$W/src"
todo=""; for b in $BINS; do [ -x "_output/bin/$b" ] || todo="$todo cmd/$b"; done
if [ -n "$todo" ]; then
  env -u GOPATH HOME="$W/home" GOCACHE="$GOCACHE_DIR" GOPROXY=off GOFLAGS= make WHAT="${todo# }" GOLDFLAGS="-s -w"
fi
for b in $BINS; do install -m 0755 "_output/bin/$b" "$CACHE/$b"; done
echo "built in $(( $(date +%s) - S ))s -> $CACHE: $("$CACHE/kubelet" --version)"
