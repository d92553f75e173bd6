"""The xDS server's token check, its request bodies sent to the real apiserver.

The reviewer is a ServiceAccount bound to the built-in ClusterRole
``system:auth-delegator`` (create TokenReviews and SubjectAccessReviews, and
nothing else): what the operator will need once it hosts the server. Clients
are ServiceAccounts with tokens from the TokenRequest API; RBAC on the
target's ConfigMap decides.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client

from kuberesolver.xds.auth import (
    DEFAULT_AUDIENCE,
    access_allowed,
    access_review,
    reviewed_identity,
    token_review,
)
from testenv import ControlPlane
from testenv.kube import api_client, apply_object, create_namespace

pytestmark = pytest.mark.integration

CONFIGMAP = "greeter-kuberesolver"


def token(api: client.ApiClient, namespace: str, name: str, audience: str) -> str:
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[audience], expiration_seconds=600)
    )
    made = client.CoreV1Api(api).create_namespaced_service_account_token(name, namespace, request)
    return str(made.status.token)


def service_account(api: client.ApiClient, namespace: str, name: str) -> None:
    client.CoreV1Api(api).create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name))
    )


def may_read_configmap(api: client.ApiClient, namespace: str, account: str) -> None:
    """A Role that gets the target's ConfigMap, bound to ``account`` (of ``namespace``)."""
    apply_object(api, {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": f"read-{CONFIGMAP}", "namespace": namespace},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"],
                   "resourceNames": [CONFIGMAP]}],
    }, namespace)  # fmt: skip
    apply_object(api, {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": f"{account}-reads-{CONFIGMAP}", "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                    "name": f"read-{CONFIGMAP}"},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
    }, namespace)  # fmt: skip


@pytest.fixture
def reviewer(
    control_plane: ControlPlane, admin_api: client.ApiClient, namespace: str
) -> client.ApiClient:
    """An API client as a ServiceAccount with only ``system:auth-delegator``."""
    service_account(admin_api, namespace, "xds-reviewer")
    apply_object(admin_api, {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": f"xds-reviewer-{namespace}"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "system:auth-delegator"},
        "subjects": [{"kind": "ServiceAccount", "name": "xds-reviewer", "namespace": namespace}],
    })  # fmt: skip
    own = token(
        admin_api, namespace, "xds-reviewer", "https://kubernetes.default.svc.cluster.local"
    )
    return api_client(control_plane.token_kubeconfig(f"reviewer-{namespace}", own, namespace))


def decide(reviewer: client.ApiClient, presented: str, namespace: str) -> tuple[bool, str]:
    """What the server will do: TokenReview, then SubjectAccessReview on the ConfigMap."""
    answer: dict[str, Any] = reviewer.sanitize_for_serialization(
        client.AuthenticationV1Api(reviewer).create_token_review(token_review(presented))
    )
    try:
        who = reviewed_identity(answer)
    except PermissionError as exc:
        return False, str(exc)
    sar: dict[str, Any] = reviewer.sanitize_for_serialization(
        client.AuthorizationV1Api(reviewer).create_subject_access_review(
            access_review(who, namespace, CONFIGMAP)
        )
    )
    return access_allowed(sar)


def test_only_a_service_account_allowed_to_read_the_configmap_is_allowed(
    admin_api: client.ApiClient, namespace: str, reviewer: client.ApiClient
) -> None:
    service_account(admin_api, namespace, "reader")
    service_account(admin_api, namespace, "stranger")
    may_read_configmap(admin_api, namespace, "reader")
    other = create_namespace(admin_api, f"t-{uuid.uuid4().hex[:10]}")
    try:
        service_account(admin_api, other, "reader")
        may_read_configmap(admin_api, other, "reader")  # in its own namespace only
        tokens: dict[str, Callable[[], str]] = {
            "reader": lambda: token(admin_api, namespace, "reader", DEFAULT_AUDIENCE),
            "stranger": lambda: token(admin_api, namespace, "stranger", DEFAULT_AUDIENCE),
            "wrong audience": lambda: token(admin_api, namespace, "reader", "someone-else"),
            "other namespace": lambda: token(admin_api, other, "reader", DEFAULT_AUDIENCE),
        }
        decisions = {who: decide(reviewer, make(), namespace) for who, make in tokens.items()}
    finally:
        client.CoreV1Api(admin_api).delete_namespace(other, propagation_policy="Background")
    assert decisions["reader"][0] is True, decisions
    assert decisions["stranger"] == (False, "no RBAC rule allows it"), decisions
    assert decisions["wrong audience"][0] is False
    assert "token refused" in decisions["wrong audience"][1]
    assert decisions["other namespace"] == (False, "no RBAC rule allows it"), decisions
    assert decide(reviewer, "not-a-token", namespace)[0] is False
