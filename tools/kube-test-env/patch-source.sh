#!/bin/bash
# Patches the unpacked kubernetes source tree ($1) for building with Debian's Go 1.19, idempotently,
# and prints the patch level (recorded next to the binaries: a cache built at another level is
# rebuilt).
#  1. vendored modern-go/reflect2 v1.0.1 crashes on the first custom resource under Go >= 1.18:
#     replaced by Debian's v1.0.2.
#  2. vendored kube-openapi's type validator treats any value equal to its type's zero value as
#     null (`reflect.DeepEqual` of two reflect.Values). Under Go 1.19 an empty string in an
#     interface and reflect.Zero share runtime.zeroVal, so `""` inside custom resource
#     arrays (a Condition's message, an EnvVar's value) is refused as "must be of type string:
#     null". Upstream kube-openapi checks `data == nil` only; so does this patch.
set -euo pipefail
SRC=${1:?usage: patch-source.sh <kubernetes source dir>}
R="$SRC/vendor/github.com/modern-go/reflect2"
if ! cmp -s /usr/share/gocode/src/github.com/modern-go/reflect2/reflect2.go "$R/reflect2.go"; then
  rm -rf "$R"; mkdir -p "$R"
  cp /usr/share/gocode/src/github.com/modern-go/reflect2/*.go /usr/share/gocode/src/github.com/modern-go/reflect2/*.s "$R/"
fi
T="$SRC/vendor/k8s.io/kube-openapi/pkg/validation/validate/type.go"
sed -i 's/if data == nil || reflect.DeepEqual(reflect.Zero(reflect.TypeOf(data)), reflect.ValueOf(data)) {/if data == nil {/' "$T"
grep -q '	if data == nil {$' "$T" || { echo "patch-source.sh: kube-openapi patch did not apply to $T" >&2; exit 1; }
echo "reflect2-1.0.2+kube-openapi-nil-only"
