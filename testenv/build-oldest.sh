#!/usr/bin/env bash
# Build the oldest supported Kubernetes (KUBERNETES_OLDEST_VERSION in versions.env) into
# its own cache directory beside the newest, each binary only when missing, and print
# that bin directory. build.sh runs it when KUBERESOLVER_TESTENV_KUBERNETES=oldest.
#
# kube-apiserver, kube-controller-manager and kubectl come from the wrapper module
# gomod/kubernetes-oldest, compiled by the Go that release was built with
# (KUBERNETES_OLDEST_GO: GOTOOLCHAIN fetches it from the Go module proxy); etcd and helm
# are the newest's (the same modules and versions). No kube-proxy: no test that runs on
# the oldest needs one, and its nftables mode is alpha (feature-gated) in 1.30.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
cache=${KUBERESOLVER_TESTENV_CACHE:-$HOME/.cache/kuberesolver-testenv}
version=$KUBERNETES_OLDEST_VERSION
bin="$cache/k8s-$version-etcd-$ETCD_VERSION/bin"
mkdir -p "$bin"
# One build at a time per directory: a second caller waits, then finds the binaries.
exec 9>"$bin/.build.lock"
flock 9
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false

minor=${version#v1.}; minor=${minor%%.*}
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean"
done

missing=()
for cmd in kube-apiserver kube-controller-manager kubectl; do
  [[ -x $bin/$cmd ]] || missing+=("k8s.io/kubernetes/cmd/$cmd")
done
if ((${#missing[@]})); then
  start=$(date +%s)
  echo "building ${missing[*]##*/} $version with $KUBERNETES_OLDEST_GO (cold: ~19 CPU minutes)" >&2
  (cd "$here/gomod/kubernetes-oldest" &&
    GOTOOLCHAIN=$KUBERNETES_OLDEST_GO nice -n 10 go build -trimpath -ldflags "$ldflags" \
      -o "$bin/" "${missing[@]}") >&2
  echo "Kubernetes $version built in $(( $(date +%s) - start )) s" >&2
fi

if [[ ! -x $bin/etcd ]]; then
  echo "building etcd $ETCD_VERSION" >&2
  (cd "$here/gomod/etcd" &&
    nice -n 10 go build -trimpath -ldflags "-s -w" -o "$bin/etcd" go.etcd.io/etcd/server/v3) >&2
fi
bash "$here/build-tools.sh" "$bin"  # helm only: kubectl is built above
echo "$bin"
