"""The real control plane, for the folders whose tests need one (integration, e2e, adoption).

Each of those folders' ``conftest.py`` calls :func:`configure` from its
``pytest_configure``: the first call finds or builds the binaries while the
network is reachable, moves the test process into its private network
namespace (see testenv/netns.py) and registers this module's fixtures, once
for the whole session. The component folders (core, client, xds, operator, ...)
never load it: they run as an ordinary user, without binaries and without a
network namespace.

The control plane starts once per session, only when a test asks for it. It is
never skipped: a missing binary is built.
"""

from __future__ import annotations

import json
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from testenv import ControlPlane, ensure_binaries
from testenv.kube import (
    admin_session,
    apply,
    apply_cluster_rbac,
    create_namespace,
    service_account_token,
)
from testenv.kube_proxy import KubeProxy
from testenv.netns import enter_private_network

ROOT = Path(__file__).resolve().parent.parent
CRDS = ROOT / "crds"
MANIFESTS = ROOT / "manifests"
OPERATOR_NAMESPACE = "kuberesolver-system"
OPERATOR_SERVICE_ACCOUNT = "kuberesolver-operator"


def configure(config: pytest.Config) -> None:
    """Binaries, then the private network, then the fixtures below (idempotent)."""
    if config.pluginmanager.has_plugin(__name__):
        return
    ensure_binaries()
    enter_private_network()
    config.pluginmanager.register(sys.modules[__name__], __name__)


# --- fixtures, registered by configure() ---------------------------------------------------


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    with ControlPlane() as cp:
        yield cp


@pytest.fixture(scope="session")
def kube_proxy(control_plane: ControlPlane) -> Iterator[KubeProxy]:
    """A real kube-proxy (nftables) in the suite's namespace: ClusterIPs reach pod IPs."""
    with KubeProxy(control_plane) as proxy:
        yield proxy


@pytest.fixture(scope="session")
def admin_api(control_plane: ControlPlane) -> Iterator[client.ApiClient]:
    """An admin client, for the test to set up its world (never for the operator)."""
    yield from admin_session(control_plane.admin_kubeconfig)


@pytest.fixture(scope="session")
def installed(admin_api: client.ApiClient) -> list[str]:
    """The CRDs and the operator's Namespace, RBAC and ConfigMap admission policy from
    manifests/ (with the xDS features' grants, from the optional/xds-pod-readiness and
    xds-token-auth components), applied."""
    applied = apply(
        admin_api,
        CRDS,
        MANIFESTS / "namespace.yaml",
        MANIFESTS / "rbac.yaml",
        MANIFESTS / "admissionpolicy.yaml",
    )
    for component in ("xds-pod-readiness", "xds-token-auth"):
        applied += apply_cluster_rbac(admin_api, MANIFESTS / "optional" / component)
    return applied


@pytest.fixture(scope="session")
def operator_kubeconfig(
    control_plane: ControlPlane, admin_api: client.ApiClient, installed: list[str]
) -> Path:
    """A kubeconfig for the operator's ServiceAccount: exactly the RBAC in manifests/."""
    token = service_account_token(admin_api, OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT)
    return control_plane.token_kubeconfig("operator", token, namespace=OPERATOR_NAMESPACE)


@pytest.fixture
def namespace(admin_api: client.ApiClient, installed: list[str]) -> Iterator[str]:
    """A fresh namespace for one test, with its default ServiceAccount; deleted after."""
    name = create_namespace(admin_api, f"t-{uuid.uuid4().hex[:10]}")
    yield name
    client.CoreV1Api(admin_api).delete_namespace(name, propagation_policy="Background")


def compact_etcd(control_plane: ControlPlane) -> int:
    """Compact etcd's history up to now (through its HTTP gateway); returns the revision."""
    base = f"http://127.0.0.1:{control_plane.etcd_port}/v3"

    def post(path: str, body: dict[str, Any]) -> Any:
        req = urllib.request.Request(f"{base}/{path}", json.dumps(body).encode(), method="POST")
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    revision = int(post("kv/range", {"key": "AA=="})["header"]["revision"])
    post("kv/compaction", {"revision": str(revision), "physical": True})
    return revision
