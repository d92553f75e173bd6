"""``GET /readyz``: the operator's readiness, on the real apiserver under real RBAC.

Ready means the first lists are in. Under the project's RBAC the probe turns
200; under a copy of it without EndpointSlices, the replica stays live but
answers 503 naming what is missing, so kubelet sends it no traffic.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from kubernetes import client

from testenv import ControlPlane, free_port
from testenv.kube import documents, service_account_token
from testenv.operator_process import OperatorProcess
from testenv.wait import until
from tests.cluster import MANIFESTS

pytestmark = pytest.mark.integration


def readyz(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
            return int(r.status), r.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode()
    except OSError:
        return 0, ""


def test_ready_once_the_first_lists_are_in(
    operator_factory: Callable[..., OperatorProcess],
) -> None:
    port = free_port()
    operator_factory({"KUBERESOLVER_READY_PORT": str(port)})
    until(lambda: readyz(port) == (200, "ok\n"), timeout_s=60, message="/readyz answers 200 ok")


def test_a_replica_that_cannot_list_endpointslices_is_live_but_not_ready(
    control_plane: ControlPlane,
    admin_api: client.ApiClient,
    namespace: str,
    installed: list[str],
) -> None:
    """The operator's own ClusterRole, minus EndpointSlices, bound to a fresh ServiceAccount."""
    (role,) = (
        d
        for d in documents(MANIFESTS / "rbac.yaml")
        if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "kuberesolver-operator"
    )
    name = f"{namespace}-no-slices"
    rules = [r for r in role["rules"] if "endpointslices" not in r["resources"]]
    rbac = client.RbacAuthorizationV1Api(admin_api)
    core = client.CoreV1Api(admin_api)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "op"}})
    rbac.create_cluster_role({"metadata": {"name": name}, "rules": rules})
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": name},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": name,
            },
            "subjects": [{"kind": "ServiceAccount", "name": "op", "namespace": namespace}],
        }
    )
    token = service_account_token(admin_api, namespace, "op")
    kubeconfig: Path = control_plane.token_kubeconfig(name, token, namespace=namespace)
    port = free_port()
    op = OperatorProcess(kubeconfig, {"KUBERESOLVER_READY_PORT": str(port)}, name="noslices")
    try:
        op.start()  # live: kopf's liveness answers
        # Services are listed; EndpointSlices never are.
        until(
            lambda: readyz(port)[0] == 503 and "services" not in readyz(port)[1],
            timeout_s=60,
            message="/readyz answers 503 with Services listed",
        )
        status, body = readyz(port)
        assert status == 503
        assert body == "endpointslices: not listed yet\n"
        assert op.alive
    finally:
        op.stop()
        op.log_path.unlink(missing_ok=True)
        rbac.delete_cluster_role_binding(name)
        rbac.delete_cluster_role(name)
