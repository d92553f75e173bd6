"""The Helm chart on a real apiserver: the README's install, and server-side dry-runs.

``helm`` is v4 built from its Go module (testenv/build-tools.sh). The real
install runs the README's two helm lines verbatim on a fresh control plane
(``helm package``, then ``helm install`` of the package, not the directory); the
test then stands in for the kubelet as in test_readme_install.py: the
operator runs as a local process under the chart's ServiceAccount token.
test_chart_render.py checks the rendered objects over a values matrix;
test_chart_live.py runs every feature under the chart's RBAC, then upgrades
and uninstalls.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes import client

import kuberesolver
from testenv import ControlPlane
from testenv.netns import pod_ip
from testenv.operator_process import OperatorProcess
from testenv.tools import UserShell
from testenv.wait import until
from tests.adoption._kubelet import operator_token_kubeconfig, run_pod
from tests.adoption.conftest import readme_block

pytestmark = pytest.mark.integration

TEMPLATE = "helm template kuberesolver charts/kuberesolver --namespace kuberesolver-system"


@pytest.fixture(scope="module")
def helm_installed(
    fresh_control_plane: ControlPlane, fresh_admin: client.ApiClient, user: UserShell
) -> Iterator[OperatorProcess]:
    """The README's helm install of the packaged chart on a fresh cluster, and the
    operator it configured."""
    package, install = readme_block("helm")
    user.run(package)
    assert install.split()[3].endswith(".tgz"), install  # the package, not the directory
    user.run(install)
    kubeconfig = operator_token_kubeconfig(fresh_control_plane, fresh_admin)
    with OperatorProcess(kubeconfig, name="helm") as op:
        yield op


def test_helm_install_then_the_operator_publishes(
    helm_installed: OperatorProcess, fresh_admin: client.ApiClient, user: UserShell
) -> None:
    status = user.run("helm status kuberesolver -n kuberesolver-system").stdout
    assert "STATUS: deployed" in status, status
    releases = user.run("helm list -n kuberesolver-system -o json").stdout
    chart = f'"chart":"kuberesolver-{kuberesolver.__version__}"'
    assert chart in releases.replace(" ", ""), releases
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

    # The status is patched after the ConfigMap is written: wait for it, then read the table.
    def listed() -> str:
        table = str(user.run("kubectl get gt -n shop").stdout)
        row = table.splitlines()[1].split()[:5]
        return table if row == ["cart", "cart", "grpc", "1", "Published"] else ""

    until(listed, timeout_s=30, message="kubectl get gt shows cart Published")
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
        "--set xds.enabled=true --set xds.auth=token --set xds.certSecret=xds-tls"
        " --set xds.mutualTLS=true --set webhook.failurePolicy=Fail"
        " --set 'watchNamespaces={shop}'",
        "--set rbac.create=false --set serviceAccount.create=false --set serviceAccount.name=sa"
        " --set crds.install=false --set replicas=1 --set 'extraArgs={--verbose}'"
        ' --set-json \'extraEnv=[{"name":"A","value":"1"}]\''
        ' --set-json \'podSecurityContext={"runAsNonRoot":true,"runAsUser":1000650000}\'',
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
