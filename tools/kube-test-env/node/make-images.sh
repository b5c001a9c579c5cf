#!/bin/bash
# Build registry-free container images as docker-archive tarballs (by hand: rootfs tar + config JSON + manifest.json):
#   localhost/pause:3.2    - kubernetes' build/pause/linux/pause.c compiled with gcc -static
#   localhost/sandbox:dev  - rootfs from Debian's busybox-static (+ /etc/passwd,group, ca dirs)
# Output: $IMG/pause.tar, $IMG/sandbox.tar (cached; rebuilt only if missing). Import with start-cluster.sh (ctr images import).
set -euo pipefail
IMG=${IMG:-/var/cache/agenttier-k8s/images}
SRC=${SRC:-${K8S_CACHE:-/var/cache/agenttier-k8s}/src}   # the kubernetes source tree (for pause.c)
mkdir -p "$IMG"
[ -s "$IMG/pause.tar" ] && [ -s "$IMG/sandbox.tar" ] && { echo "cached: $IMG/{pause,sandbox}.tar"; exit 0; }
command -v busybox >/dev/null && [ "$(readlink -f "$(command -v busybox)")" = /bin/busybox ] && file /bin/busybox | grep -q static || \
  apt-get install -y -q --no-install-recommends busybox-static gcc libc6-dev python3 >/dev/null
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT

# mkimage NAME:TAG ROOTFS_DIR OUT.tar CONFIG_JSON_FRAGMENT(python dict literal for "config")
mkimage() {
  local ref=$1 root=$2 out=$3 cfg=$4; local w="$T/$(basename "$out" .tar)"
  mkdir -p "$w/layer"
  tar --numeric-owner --owner=0 --group=0 --sort=name --mtime='2021-01-13 00:00Z' -C "$root" -cf "$w/layer/layer.tar" .
  python3 - "$ref" "$w" "$cfg" <<'PY'
import hashlib, json, sys, os
ref, w, cfg = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
h = hashlib.sha256(open(f"{w}/layer/layer.tar","rb").read()).hexdigest()
conf = {"architecture":"amd64","os":"linux","created":"2021-01-13T00:00:00Z","config":cfg,
        "rootfs":{"type":"layers","diff_ids":["sha256:"+h]},
        "history":[{"created":"2021-01-13T00:00:00Z","created_by":"agenttier make-images.sh"}]}
cb = json.dumps(conf, sort_keys=True).encode(); ch = hashlib.sha256(cb).hexdigest()
open(f"{w}/{ch}.json","wb").write(cb)
os.rename(f"{w}/layer", f"{w}/{h}")
json.dump([{"Config":f"{ch}.json","RepoTags":[ref],"Layers":[f"{h}/layer.tar"]}], open(f"{w}/manifest.json","w"))
PY
  (cd "$w" && tar --owner=0 --group=0 -cf "$out.tmp" *) && mv "$out.tmp" "$out"
}

# --- pause ---
P="$T/pause-root"; mkdir -p "$P"
gcc -Os -static -DVERSION=v3.2-agenttier -o "$P/pause" "$SRC/build/pause/linux/pause.c"
strip "$P/pause"
mkimage localhost/pause:3.2 "$P" "$IMG/pause.tar" '{"Entrypoint":["/pause"],"User":"65535:65535"}'

# --- sandbox (busybox-static rootfs) ---
R="$T/sandbox-root"; mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,root,home,proc,sys,dev,var/tmp,workspace}
chmod 1777 "$R/tmp" "$R/var/tmp"
cp /bin/busybox "$R/bin/busybox"
for a in $(/bin/busybox --list-full); do [ "$a" = bin/busybox ] || ln -sf /bin/busybox "$R/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$R/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$R/etc/group"
echo 'hosts: files dns' > "$R/etc/nsswitch.conf"
mkimage localhost/sandbox:dev "$R" "$IMG/sandbox.tar" \
  '{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"WorkingDir":"/workspace","Entrypoint":["/bin/sh","-c"],"Cmd":["trap \"exit 0\" TERM INT; sleep 2147483647 & wait"]}'
ls -la "$IMG"
