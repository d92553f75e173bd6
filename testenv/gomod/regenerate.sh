#!/usr/bin/env bash
# Regenerate the wrapper modules after a version bump in ../versions.env.
# k8s.io/kubernetes replaces its staging modules with ./staging paths, which a
# dependent module cannot use, so every one is replaced with its v0.Y.Z twin.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../versions.env"
staging_version=v0.${KUBERNETES_VERSION#v1.}

# The go.mod of k8s.io/kubernetes at version $1, from the module cache.
kubernetes_modfile() {
  (cd "$here" && go mod download -json "k8s.io/kubernetes@$1" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
}

# The replace block: every ./staging module of go.mod $1 at its staging version $2.
staging_replaces() {
  echo "replace ("
  grep -oE '^\s*k8s\.io/[a-z0-9-]+ => \./staging' "$1" |
    awk -v v="$2" '{print "\t" $1 " => " $1 " " v}'
  echo ")"
}

modfile=$(kubernetes_modfile "$KUBERNETES_VERSION")

cd "$here/kubernetes"
{
  echo "// Wrapper module: builds kube-apiserver, kube-controller-manager, kube-proxy, kube-scheduler and kubelet for tests."
  echo "module kuberesolver.local/testenv/kubernetes"
  echo
  grep -E '^go ' "$modfile"
  echo
  echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
  echo
  echo "tool ("
  echo "	k8s.io/kubernetes/cmd/kube-apiserver"
  echo "	k8s.io/kubernetes/cmd/kube-controller-manager"
  echo "	k8s.io/kubernetes/cmd/kube-proxy"
  echo "	k8s.io/kubernetes/cmd/kube-scheduler"
  echo "	k8s.io/kubernetes/cmd/kubelet"
  echo ")"
  echo
  staging_replaces "$modfile" "$staging_version"
} > go.mod
rm -f go.sum
go mod tidy

cd "$here/etcd"
{
  echo "// Wrapper module: builds the etcd server for tests."
  echo "module kuberesolver.local/testenv/etcd"
  echo
  echo "go 1.25.0"
  echo
  echo "require go.etcd.io/etcd/server/v3 $ETCD_VERSION"
  echo
  echo "tool go.etcd.io/etcd/server/v3"
} > go.mod
rm -f go.sum
go mod tidy

# kubectl (build-tools.sh): k8s.io/kubectl at the staging version of the apiserver.
cd "$here/kubectl"
go mod edit -require="k8s.io/kubectl@$staging_version"
go mod tidy

# The oldest supported Kubernetes: its own wrapper module, tidied by the Go it was
# released with. That Go predates the go.mod "tool" directive, so tools.go (build
# tag "tools", never compiled) keeps the commands' packages required.
oldest_staging=v0.${KUBERNETES_OLDEST_VERSION#v1.}
oldest_modfile=$(kubernetes_modfile "$KUBERNETES_OLDEST_VERSION")
cd "$here/kubernetes-oldest"
{
  echo "// Wrapper module: the oldest supported kube-apiserver, kube-controller-manager and"
  echo "// kubectl, for tests (KUBERESOLVER_TESTENV_KUBERNETES=oldest)."
  echo "module kuberesolver.local/testenv/kubernetes-oldest"
  echo
  grep -E '^go ' "$oldest_modfile"
  echo
  echo "require k8s.io/kubernetes $KUBERNETES_OLDEST_VERSION"
  echo
  staging_replaces "$oldest_modfile" "$oldest_staging"
} > go.mod
rm -f go.sum
GOTOOLCHAIN=$KUBERNETES_OLDEST_GO go mod tidy
