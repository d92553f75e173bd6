#!/usr/bin/env bash
# Build the user-facing tools the README and chart tests drive (kubectl at the
# control plane's version, helm) into the control plane's bin directory, each
# only when missing. Called by build.sh; runs on its own too:
#
#   testenv/build-tools.sh BIN_DIR
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
bin=${1:?usage: build-tools.sh BIN_DIR}
mkdir -p "$bin"
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false

if [[ ! -x $bin/kubectl ]]; then
  minor=${KUBERNETES_VERSION#v1.}; minor=${minor%%.*}
  start=$(date +%s)
  echo "building kubectl $KUBERNETES_VERSION (k8s.io/kubectl, ~2-4 min cold)" >&2
  (cd "$here/gomod/kubectl" &&
    nice -n 10 go build -trimpath -ldflags "-s -w \
      -X k8s.io/client-go/pkg/version.gitVersion=$KUBERNETES_VERSION \
      -X k8s.io/client-go/pkg/version.gitMajor=1 \
      -X k8s.io/client-go/pkg/version.gitMinor=$minor \
      -X k8s.io/component-base/version.gitVersion=$KUBERNETES_VERSION \
      -X k8s.io/component-base/version.gitMajor=1 \
      -X k8s.io/component-base/version.gitMinor=$minor" \
      -o "$bin/.kubectl.$$.partial" . && mv "$bin/.kubectl.$$.partial" "$bin/kubectl") >&2
  echo "kubectl built in $(( $(date +%s) - start )) s" >&2
fi

if [[ ! -x $bin/helm ]]; then
  helm_version=$(awk '$1 == "helm.sh/helm/v4" {print $2}' "$here/gomod/helm/go.mod")
  start=$(date +%s)
  echo "building helm $helm_version (helm.sh/helm/v4, ~2-4 min cold)" >&2
  (cd "$here/gomod/helm" &&
    nice -n 10 go build -trimpath -ldflags "-s -w \
      -X helm.sh/helm/v4/internal/version.version=$helm_version \
      -X helm.sh/helm/v4/internal/version.gitTreeState=clean" \
      -o "$bin/.helm.$$.partial" helm.sh/helm/v4/cmd/helm && mv "$bin/.helm.$$.partial" "$bin/helm") >&2
  echo "helm built in $(( $(date +%s) - start )) s" >&2
fi

if [[ ! -x $bin/helm-docs ]]; then
  # The chart's README is generated from its values.yaml (make chart-docs).
  start=$(date +%s)
  echo "building helm-docs $HELM_DOCS_VERSION (~1-3 min cold)" >&2
  GOBIN="$bin" nice -n 10 go install -trimpath -ldflags "-s -w" \
    "github.com/norwoodj/helm-docs/cmd/helm-docs@$HELM_DOCS_VERSION" >&2
  echo "helm-docs built in $(( $(date +%s) - start )) s" >&2
fi
