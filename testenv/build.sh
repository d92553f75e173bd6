#!/usr/bin/env bash
# Build the test control plane (kube-apiserver, kube-controller-manager, etcd),
# kube-proxy, the test node (kubelet, kube-scheduler) and the node's two image
# programs from Go modules, once, into a cache outside the repo keyed by
# version. Each block builds only what is missing.
#
#   testenv/build.sh            build what is missing, print the bin directory
#   KUBERESOLVER_TESTENV_CACHE  cache root (default ~/.cache/kuberesolver-testenv)
#   KUBERESOLVER_TESTENV_KUBERNETES=oldest  the oldest supported Kubernetes instead
#                               (build-oldest.sh; default: newest, the one below)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
case ${KUBERESOLVER_TESTENV_KUBERNETES:-newest} in
  newest) ;;
  oldest) exec bash "$here/build-oldest.sh" ;;
  *) echo "KUBERESOLVER_TESTENV_KUBERNETES is newest or oldest," \
       "not '$KUBERESOLVER_TESTENV_KUBERNETES'" >&2; exit 2 ;;
esac
# shellcheck source=versions.env
source "$here/versions.env"
cache=${KUBERESOLVER_TESTENV_CACHE:-$HOME/.cache/kuberesolver-testenv}
bin="$cache/k8s-$KUBERNETES_VERSION-etcd-$ETCD_VERSION/bin"
# One build at a time per cache: concurrent runs (parallel test workers, two
# checkouts) wait for the first and then find its binaries.
mkdir -p "$cache"
exec 9>"$cache/.build.lock"
flock 9
bash "$here/build-tools.sh" "$bin"  # kubectl and helm, each only when missing

mkdir -p "$bin"
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false
start=$(date +%s)

minor=${KUBERNETES_VERSION#v1.}; minor=${minor%%.*}
version_ldflags="-s -w \
 -X k8s.io/component-base/version.gitVersion=$KUBERNETES_VERSION \
 -X k8s.io/component-base/version.gitMajor=1 \
 -X k8s.io/component-base/version.gitMinor=$minor \
 -X k8s.io/component-base/version.gitTreeState=clean"

if [[ ! -x $bin/kube-apiserver || ! -x $bin/kube-controller-manager || ! -x $bin/etcd ]]; then
  echo "building kube-apiserver and kube-controller-manager $KUBERNETES_VERSION (cold: ~5-8 min on 2 cores)" >&2
  (cd "$here/gomod/kubernetes" &&
    go build -trimpath -ldflags "$version_ldflags" -o "$bin/" \
      k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager) >&2

  echo "building etcd $ETCD_VERSION" >&2
  (cd "$here/gomod/etcd" &&
    go build -trimpath -ldflags "-s -w" -o "$bin/etcd" go.etcd.io/etcd/server/v3) >&2

  echo "control plane built in $(( $(date +%s) - start )) s" >&2
fi

# kube-proxy, from the same module: ClusterIPs route to pod IPs in the tests'
# network namespace (nftables mode; ~50 s with a warm build cache).
if [[ ! -x $bin/kube-proxy ]]; then
  echo "building kube-proxy $KUBERNETES_VERSION" >&2
  (cd "$here/gomod/kubernetes" &&
    go build -trimpath -ldflags "$version_ldflags" -o "$bin/kube-proxy" \
      k8s.io/kubernetes/cmd/kube-proxy) >&2
fi
# The test node (testenv/node.py): kubelet and kube-scheduler from the same module.
if [[ ! -x $bin/kubelet || ! -x $bin/kube-scheduler ]]; then
  start=$(date +%s)
  echo "building kubelet and kube-scheduler $KUBERNETES_VERSION" >&2
  (cd "$here/gomod/kubernetes" &&
    nice -n 10 go build -trimpath -ldflags "$version_ldflags" -o "$bin/" \
      k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-scheduler) >&2
  echo "kubelet and kube-scheduler built in $(( $(date +%s) - start )) s" >&2
fi

# The node's image programs (the sandbox's pause, the test HTTP server): rebuilt
# when their sources change, which the stamp records.
images_src="$here/gomod/node-images"
images_hash=$(cd "$images_src" && find . -type f \( -name '*.go' -o -name go.mod \) | sort |
  xargs sha256sum | sha256sum | cut -c1-16)
if [[ $(cat "$bin/node-images.stamp" 2>/dev/null) != "$images_hash" ||
      ! -x $bin/pause || ! -x $bin/testserver ]]; then
  (cd "$images_src" &&
    nice -n 10 go build -trimpath -ldflags "-s -w" -o "$bin/" ./pause ./testserver) >&2
  echo "$images_hash" > "$bin/node-images.stamp"
fi
echo "$bin"
