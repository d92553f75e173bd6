# kuberesolver: the two commands a fresh machine needs are `make demo` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
STAMP := $(VENV)/.installed
# one folder per component; none of them needs the control plane or root
UNIT_TESTS := tests/core tests/kube tests/xds tests/client tests/operator tests/projector tests/package tests/testenv

.PHONY: install controlplane images dist demo demo-node test test-oldest test-unit test-node lint bench package chart-docs clean

install: $(STAMP)  ## a .venv with the package, its extras and the dev tools (idempotent)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade 'pip>=25.1'
	$(PY) -m pip install -q -e '.[operator,metrics,direct,projector]' --group dev
	touch $(STAMP)

controlplane:  ## build (or find) the cached control plane, kubelet, kube-scheduler and the node's images
	bash testenv/build.sh

images: install  ## the operator, projector and test images (buildah, no registry), cached as OCI archives
	$(PY) -m testenv.images

dist: install controlplane  ## wheel, sdist, both images (OCI archives), the packaged chart, an SBOM per image; sizes and sha256
	$(PY) -m testenv.dist

demo: install controlplane  ## control plane + operator + real gRPC backends + a client, shown working
	$(PY) -m demo

demo-node: install controlplane  ## a real node: the chart from local images, a rollout through kubelet's mount, the fallback carrying the calls
	$(PY) -m demo.node

# Three workers, each with its own control plane and network namespace: the suite mostly
# waits on processes, so three keep two cores busy (18 min, against 30+ serially).
# tests/node runs after them in one process of its own: a network namespace holds one
# kube-proxy (they share the nftables table), and the journey's kube-proxy is its node's.
test: install controlplane  ## the whole suite: unit, client, integration and end-to-end
	$(PY) -m pytest -n 3 --ignore=tests/node
	$(PY) -m pytest tests/node

# What depends on the apiserver's version: the CRD (schema, CEL rules, explain), the
# ConfigMap admission policy, namespaced mode under its Roles (audited), EndpointSlices from kube-controller-manager, publishing and
# status, the mounts webhook, RBAC, quota refusals, garbage collection, watches across an
# apiserver restart, and the install with kubectl and helm. The other tests exercise the
# operator's and the clients' own logic (operator restarts, leader hand-over, xDS,
# templates) over APIs unchanged since before 1.30; make test runs them.
LIFECYCLE := tests/integration/operator/test_lifecycle.py
OLDEST_TESTS := \
  tests/integration/test_controlplane.py \
  tests/integration/test_crd_outlier_detection.py \
  tests/integration/operator/test_admission.py \
  tests/integration/operator/test_admission_policy.py \
  tests/integration/operator/test_namespaced_mode.py \
  tests/integration/operator/test_publish.py \
  tests/integration/operator/test_webhook.py \
  $(LIFECYCLE)::test_deleting_a_target_needs_no_finalizer_and_collects_its_configmap \
  $(LIFECYCLE)::test_apiserver_restart_during_churn_loses_no_update \
  $(LIFECYCLE)::test_api_errors_publish_nothing_then_converge \
  $(LIFECYCLE)::test_operator_identity_is_least_privilege \
  tests/adoption/test_crd_explain.py \
  tests/adoption/test_readme_install.py \
  tests/adoption/test_helm.py

test-oldest: install  ## those tests against the oldest supported Kubernetes (versions.env)
	KUBERESOLVER_TESTENV_KUBERNETES=oldest $(PY) -m pytest $(OLDEST_TESTS)

test-unit: install  ## only what needs no control plane
	$(PY) -m pytest $(UNIT_TESTS)

test-node: install controlplane  ## only the real-node tests (containerd and kubelet run real Pods)
	$(PY) -m pytest tests/node

lint: install  ## ruff and mypy strict
	$(VENV)/bin/ruff check kuberesolver tests testenv bench demo
	$(VENV)/bin/ruff format --check kuberesolver tests testenv bench demo
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

bench: install controlplane  ## every benchmark; each prints one JSON object on its last line
	@set -e; for b in bench/*.py; do \
	  case $$b in bench/_*) continue;; esac; \
	  echo "== $$b"; $(PY) $$b; \
	done

package: install  ## sdist and wheel, twine check, then the wheel in a clean venv
	PY=$(PY) .ci/package-check

chart-docs:  ## regenerate charts/kuberesolver/README.md from its values.yaml (helm-docs)
	"$$(bash testenv/build.sh | tail -n 1)/helm-docs" --chart-search-root charts --sort-values-order file

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
