"""Namespaced mode on a real apiserver, under exactly the RBAC the chart renders for it.

The chart is rendered with ``watchNamespaces`` of two namespaces and xDS with
the Pod watch on; its CRD, ServiceAccount, Roles, ClusterRoles and bindings are
applied, and the operator runs as that ServiceAccount with the environment of
the rendered Deployment (kopf gets one ``--namespace`` per watched namespace).
The apiserver audits every call of a ServiceAccount: not one is refused, none
lists or watches a namespaced resource across the cluster, and none reaches a
namespace not watched.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from testenv import ControlPlane
from testenv.audit import AuditLog
from testenv.controlplane import free_port
from testenv.kube import admin_session, apply_object, create_namespace, service_account_token
from testenv.operator_process import OperatorProcess
from testenv.tools import UserShell
from tests.adoption.chart import render
from tests.adoption.rbac_calls import feature_calls
from tests.integration.operator.helpers import Namespace, ep

pytestmark = pytest.mark.integration

RELEASE_NS = "ops"
WATCHED = ("shop", "tenant")
OUTSIDE = "elsewhere"
FULL = "nsmode"
ACCOUNT = f"system:serviceaccount:{RELEASE_NS}:{FULL}-operator"
VALUES: dict[str, Any] = {
    "fullnameOverride": FULL,
    "watchNamespaces": list(WATCHED),
    "webhook.enabled": False,
    "xds.enabled": True,
    "xds.podReadiness": True,
}
APPLIED = {
    "CustomResourceDefinition", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role",
    "RoleBinding", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
}  # fmt: skip
NAMESPACED = {
    "services", "endpointslices", "pods", "configmaps", "events", "grpctargets",
    "grpctargets/status", "secrets", "leases",
}  # fmt: skip
ALLOWED_NAMESPACE = "kuberesolver.io/allowed-namespaces"


@pytest.fixture(scope="module")
def audited() -> Iterator[ControlPlane]:
    """A control plane of this module's own, auditing every ServiceAccount's calls."""
    with ControlPlane(audit=True) as cp:
        yield cp


@pytest.fixture(scope="module")
def admin(audited: ControlPlane) -> Iterator[client.ApiClient]:
    yield from admin_session(audited.admin_kubeconfig)


@pytest.fixture(scope="module")
def rendered(audited: ControlPlane, admin: client.ApiClient) -> list[dict[str, Any]]:
    """The chart's objects for namespaced mode; its RBAC and CRD applied."""
    objects = render(UserShell(audited.admin_kubeconfig), VALUES, release=FULL,
                     namespace=RELEASE_NS)  # fmt: skip
    for name in (RELEASE_NS, *WATCHED, OUTSIDE):
        create_namespace(admin, name)
    for obj in sorted(objects, key=lambda o: o["kind"] != "CustomResourceDefinition"):
        if obj["kind"] in APPLIED:
            apply_object(admin, obj)
    return objects


def deployment_env(objects: list[dict[str, Any]]) -> dict[str, str]:
    """The rendered Deployment's plain environment, its ports local ones (no kubelet here)."""
    (deployment,) = (o for o in objects if o["kind"] == "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    for own in ("KUBERESOLVER_METRICS_PORT", "KUBERESOLVER_READY_PORT"):
        env.pop(own, None)  # OperatorProcess serves its own
    return env | {
        "KUBERESOLVER_LEASE_NAMESPACE": RELEASE_NS,
        "KUBERESOLVER_XDS_ADDRESS": f"127.0.0.1:{free_port()}",
    }


def test_the_chart_grants_namespaced_resources_only_by_role(
    rendered: list[dict[str, Any]],
) -> None:
    for role in (o for o in rendered if o["kind"] == "ClusterRole"):
        for rule in role["rules"]:
            assert not NAMESPACED & set(rule["resources"]), (role["metadata"]["name"], rule)
    roles = {(o["metadata"]["namespace"], o["metadata"]["name"])
             for o in rendered if o["kind"] == "Role"}  # fmt: skip
    assert {ns for ns, _ in roles} == {RELEASE_NS, *WATCHED}


def test_the_operator_serves_its_namespaces_with_namespaced_calls_only(
    audited: ControlPlane,
    admin: client.ApiClient,
    rendered: list[dict[str, Any]],
    tmp_path: Path,
) -> None:
    shop, tenant, outside = (
        Namespace(admin, "shop"),
        Namespace(admin, "tenant"),
        Namespace(admin, OUTSIDE),
    )
    shop.service("cart", annotations={ALLOWED_NAMESPACE: "tenant"})
    shop.make_slice("cart", "cart-a", [ep("10.0.0.1", ready=True)])
    shop.create_target("cart", {"service": "cart", "port": "grpc"})
    tenant.create_target("remote", {"service": "cart", "serviceNamespace": "shop"})
    tenant.create_target("stray", {"service": "x", "serviceNamespace": OUTSIDE})
    outside.service("x")
    outside.make_slice("x", "x-a", [ep("10.0.9.1", ready=True)])
    outside.create_target("unseen", {"service": "x"})

    env = deployment_env(rendered)
    assert env["KUBERESOLVER_WATCH_NAMESPACES"] == ",".join(WATCHED)
    token = service_account_token(admin, RELEASE_NS, f"{FULL}-operator")
    kubeconfig = audited.token_kubeconfig("nsmode", token, namespace=RELEASE_NS)
    audit = AuditLog(audited.audit_log)
    audit.mark()
    with OperatorProcess(kubeconfig, env=env, name="nsmode") as op:
        shop.wait_published("cart", {"10.0.0.1"})
        tenant.wait_published("remote", {"10.0.0.1"})
        tenant.wait_condition("stray", "ServiceFound", status="False",
                              reason="NamespaceNotWatched")  # fmt: skip
        tenant.wait_event("stray", reason="NamespaceNotWatched", type="Warning")
        # The watches carry changes (not only the first read): a second endpoint.
        shop.make_slice("cart", "cart-a", [ep("10.0.0.1", ready=True),
                                           ep("10.0.0.2", ready=True)])  # fmt: skip
        tenant.wait_published("remote", {"10.0.0.1", "10.0.0.2"})
        op.stop()
        lines = op.log_text().splitlines()
    said = [ln for ln in lines if "tenant/stray" in ln and "does not watch" in ln]
    assert len(said) == 1, said
    assert f"namespace {OUTSIDE!r}" in said[0], said[0]
    assert outside.get_configmap("unseen") is None  # the operator never saw it
    refused = [ln for ln in lines if "forbidden" in ln.lower() or " 403" in ln]
    assert not refused, "\n".join(refused)

    calls = audit.calls(ACCOUNT)
    assert [str(c) for c in calls if c.code == 403] == []
    wide = [str(c) for c in calls if not c.namespace and c.resource]
    assert wide == [], "cluster-scoped calls beyond the CRD:\n" + "\n".join(wide)
    assert {c.namespace for c in calls if c.namespace} <= {RELEASE_NS, *WATCHED}
    # Every call is one tests/adoption/rbac_calls.py declares (and the chart grants).
    declared = {(v, c.resource) for c in feature_calls(VALUES) for v in c.verbs}
    made = {(c.verb, c.resource) for c in calls if c.resource}
    assert made <= declared, sorted(made - declared)
    watched = {(c.resource, c.namespace) for c in calls if c.verb == "watch"}
    for ns in WATCHED:
        for resource in ("services", "endpointslices", "pods", "grpctargets"):
            assert (resource, ns) in watched, (resource, ns, sorted(watched))
