#!/usr/bin/env bash
# Builds the control-plane binaries (kube-apiserver, kube-controller-manager, etcd) and helm
# from the Go module proxy into a cache outside the repo. Builds only what is missing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
KVER=v1.36.3
HELM_VER=v3.22.0
OUT="${CROWBAR_BIN_DIR:-$HOME/.cache/crowbar/bin/$KVER}"
export GOTOOLCHAIN=local CGO_ENABLED=0
mkdir -p "$OUT"
command -v go >/dev/null || { echo "build-bins: Go >= 1.26 is required (go not found on PATH)" >&2; exit 1; }

LD="-s -w"
for k in gitVersion=$KVER gitMajor=1 gitMinor=36 gitTreeState=clean; do
  LD="$LD -X k8s.io/component-base/version.$k -X k8s.io/client-go/pkg/version.$k"
done

build() { # name package module-dir
  local name=$1 pkg=$2 dir=$3
  if [ -x "$OUT/$name" ]; then return 0; fi
  echo "build-bins: building $name (cold builds take minutes; cached in $OUT)" >&2
  local t0=$SECONDS
  (cd "$dir" && go build -trimpath -ldflags "$LD" -o "$OUT/$name.tmp" "$pkg")
  mv "$OUT/$name.tmp" "$OUT/$name"
  echo "build-bins: $name built in $((SECONDS - t0))s" >&2
}

build etcd go.etcd.io/etcd/server/v3 "$here/kube-bins"
build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$here/kube-bins"
build kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager "$here/kube-bins"
build kubectl k8s.io/kubernetes/cmd/kubectl "$here/kube-bins"
build helm helm.sh/helm/v3/cmd/helm "$here/helm"
echo "$OUT"
