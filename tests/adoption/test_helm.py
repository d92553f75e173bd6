"""The Helm chart: lint, server-side dry-run of its rendering, a real install, and one source.

``helm`` is v4 built from its Go module (testenv/build-tools.sh). The real
install runs the README's helm line verbatim on a fresh control plane; the
test then stands in for the kubelet as in test_readme_install.py: the
operator runs as a local process under the chart's ServiceAccount token.
"""

from __future__ import annotations

import filecmp
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from testenv import ControlPlane
from testenv.netns import pod_ip
from testenv.operator_process import OperatorProcess
from testenv.tools import UserShell
from testenv.wait import until
from tests.adoption._kubelet import operator_token_kubeconfig, run_pod
from tests.adoption.conftest import ROOT, readme_block

pytestmark = pytest.mark.integration

CHART = ROOT / "charts" / "kuberesolver"
HELM_ONLY_LABELS = frozenset(
    {
        "app.kubernetes.io/instance",
        "app.kubernetes.io/version",
        "app.kubernetes.io/managed-by",
        "helm.sh/chart",
    }
)
TEMPLATE = "helm template kuberesolver charts/kuberesolver --namespace kuberesolver-system"


def objects(text: str, drop_helm_labels: bool = False) -> dict[tuple[str, str, str], Any]:
    """Rendered YAML keyed by (kind, namespace, name); Helm's own labels removed on request."""
    out: dict[tuple[str, str, str], Any] = {}
    for doc in yaml.safe_load_all(text):
        if not doc:
            continue
        if drop_helm_labels:
            spec = doc.get("spec") or {}
            for meta in (doc["metadata"], (spec.get("template") or {}).get("metadata") or {}):
                labels = meta.get("labels") or {}
                for key in HELM_ONLY_LABELS & set(labels):
                    del labels[key]
                if "labels" in meta and not labels:
                    del meta["labels"]
        key = (doc["kind"], doc["metadata"].get("namespace", ""), doc["metadata"]["name"])
        out[key] = doc
    return out


@pytest.fixture(scope="module")
def helm_installed(
    fresh_control_plane: ControlPlane, fresh_admin: client.ApiClient, user: UserShell
) -> Iterator[OperatorProcess]:
    """The README's helm install on a fresh cluster, and the operator it configured."""
    (line,) = readme_block("helm")
    user.run(line)
    kubeconfig = operator_token_kubeconfig(fresh_control_plane, fresh_admin)
    with OperatorProcess(kubeconfig, name="helm") as op:
        yield op


def test_helm_lint(user: UserShell) -> None:
    result = user.run("helm lint --strict charts/kuberesolver")
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout, str(result)


def test_helm_install_then_the_operator_publishes(
    helm_installed: OperatorProcess, fresh_admin: client.ApiClient, user: UserShell
) -> None:
    status = user.run("helm status kuberesolver -n kuberesolver-system").stdout
    assert "STATUS: deployed" in status, status
    core = client.CoreV1Api(fresh_admin)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="shop")))
    core.create_namespaced_service(
        "shop",
        client.V1Service(
            metadata=client.V1ObjectMeta(name="cart"),
            spec=client.V1ServiceSpec(
                cluster_ip="None",
                selector={"app": "cart"},
                ports=[client.V1ServicePort(name="grpc", port=50051, target_port="grpc")],
            ),
        ),
    )
    run_pod(fresh_admin, "shop", "cart-1", pod_ip(61), {"app": "cart"})
    user.run(
        "kubectl apply -f - <<'EOF'\n"
        "apiVersion: kuberesolver.io/v1alpha1\nkind: GrpcTarget\n"
        "metadata: {name: cart, namespace: shop}\nspec: {service: cart, port: grpc}\nEOF"
    )

    def published() -> str:
        cm = core.read_namespaced_config_map("cart", "shop")
        assert pod_ip(61) in (cm.data or {}).get("endpoints.json", "")
        return str(cm.data["endpoints.json"])

    until(published, timeout_s=60, message="the cart ConfigMap")
    table = user.run("kubectl get gt -n shop").stdout
    assert table.splitlines()[1].split()[:5] == ["cart", "cart", "grpc", "1", "Published"], table
    for kind, name in (
        ("deployment", "kuberesolver-operator"),
        ("service", "kuberesolver-operator-metrics"),
        ("poddisruptionbudget", "kuberesolver-operator"),
        ("networkpolicy", "kuberesolver-operator"),
    ):
        user.run(f"kubectl get -n kuberesolver-system {kind}/{name}")


@pytest.mark.parametrize(
    "values",
    [
        "",
        "--set webhook.enabled=false --set replicas=3"
        " --set 'watchNamespaces={shop,kuberesolver-system}' --set metrics.port=9100",
        "--set podDisruptionBudget.enabled=false --set networkPolicy.enabled=false"
        " --set metrics.service.enabled=false --set topologySpread=false",
    ],
)
def test_helm_template_passes_a_server_side_dry_run(
    helm_installed: OperatorProcess, user: UserShell, values: str
) -> None:
    result = user.run(
        # As helm's own server-side apply would (manager "helm"), onto the installed release.
        f"{TEMPLATE} {values} | kubectl apply --server-side --force-conflicts"
        " --field-manager=helm --dry-run=server -f -"
    )
    assert "(server dry run)" in result.stdout, str(result)


def test_service_monitor_renders_when_asked(user: UserShell) -> None:
    rendered = objects(user.run(f"{TEMPLATE} --set metrics.serviceMonitor.enabled=true").stdout)
    monitor = rendered[("ServiceMonitor", "kuberesolver-system", "kuberesolver-operator")]
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "interval": "30s"}]


def test_the_chart_renders_the_kustomize_base(user: UserShell) -> None:
    chart = objects(user.run(TEMPLATE).stdout, drop_helm_labels=True)
    base = objects(user.run("kubectl kustomize manifests/").stdout)
    del base[("Namespace", "", "kuberesolver-system")]  # helm --create-namespace makes it
    assert sorted(chart) == sorted(base)
    for key, obj in base.items():
        assert chart[key] == obj, key


def test_the_chart_with_cert_manager_renders_the_cert_manager_component(
    user: UserShell, tmp_path: Path
) -> None:
    """webhook.tls.mode=certManager is manifests/ with manifests/optional/cert-manager."""
    chart = objects(
        user.run(f"{TEMPLATE} --set webhook.tls.mode=certManager").stdout, drop_helm_labels=True
    )
    here = os.path.relpath(ROOT / "manifests", tmp_path)
    (tmp_path / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources: [{here}]\ncomponents: [{here}/optional/cert-manager]\n"
    )
    base = objects(user.run(f"kubectl kustomize {tmp_path}").stdout)
    del base[("Namespace", "", "kuberesolver-system")]
    assert sorted(chart) == sorted(base)
    for key, obj in base.items():
        assert chart[key] == obj, key


def test_the_chart_carries_the_crds_unchanged() -> None:
    names = sorted(p.name for p in (ROOT / "crds").glob("*.yaml"))
    assert names == sorted(p.name for p in (CHART / "crds").glob("*.yaml"))
    _match, mismatch, errors = filecmp.cmpfiles(ROOT / "crds", CHART / "crds", names, shallow=False)
    assert (mismatch, errors) == ([], []), "charts/kuberesolver/crds/ must link to crds/"


def test_every_value_is_documented() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    for i, line in enumerate(lines):
        if line and not line.startswith((" ", "#")):  # a top-level key
            around = (lines[i - 1].lstrip(), lines[i + 1].lstrip() if i + 1 < len(lines) else "")
            assert any(a.startswith("#") for a in around), f"values.yaml: {line} has no comment"
    top = set(yaml.safe_load((CHART / "values.yaml").read_text()))
    assert {"image", "replicas", "resources", "settings", "watchNamespaces"} <= top
