"""What a kubelet and a scheduler would do for the README's workloads, in tests without them."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from kubernetes import client

from testenv import ControlPlane
from testenv.kube import service_account_token
from testenv.wait import until
from testenv.workloads import create_node, create_pod

OPERATOR_NAMESPACE = "kuberesolver-system"
OPERATOR_SERVICE_ACCOUNT = "kuberesolver-operator"

# The "restricted" Pod Security level, as the example namespace enforces it.
RESTRICTED_POD = {
    "securityContext": {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    },
}
RESTRICTED_CONTAINER = {
    "securityContext": {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    },
}


def run_pod(
    api: client.ApiClient,
    namespace: str,
    name: str,
    ip: str,
    labels: Mapping[str, str],
    node: str = "node-1",
    port: tuple[str, int] = ("grpc", 50051),
) -> None:
    """A restricted-compliant server Pod, bound to ``node``, reported Running and Ready."""
    create_node(api, node)
    create_pod(
        api,
        namespace,
        name,
        ip,
        node,
        labels,
        container_ports=[{"name": port[0], "containerPort": port[1]}],
        spec=RESTRICTED_POD,
        container=RESTRICTED_CONTAINER,
        termination_grace_s=None,
    )


def operator_token_kubeconfig(cp: ControlPlane, api: client.ApiClient) -> Path:
    """A kubeconfig for the operator's ServiceAccount (once the install has created it)."""
    token = until(
        lambda: service_account_token(api, OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT),
        timeout_s=30,
        message="the operator's ServiceAccount token",
    )
    return cp.token_kubeconfig("operator", token, namespace=OPERATOR_NAMESPACE)
