"""Lifecycle: deletion without finalizers, restarts, API errors, least privilege."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from kubernetes import client

from kuberesolver.core.snapshot import ENDPOINTS_KEY, decode
from testenv import ControlPlane
from testenv.kube import api_client, service_account_token
from testenv.netns import pod_ip
from testenv.operator_process import OperatorProcess
from testenv.wait import until
from tests.integration.operator.helpers import (
    GROUP,
    PLURAL,
    VERSION,
    ConfigMapWrites,
    Namespace,
    condition,
    ep,
    make_slice,
)

pytestmark = pytest.mark.integration


def svc_targeted(ns: Namespace, ips: list[str], *targets: str) -> None:
    """Service svc with one slice svc-1 of ``ips``, and a GrpcTarget of it per name in
    ``targets`` (t when none is named)."""
    ns.service("svc")
    ns.make_slice("svc", "svc-1", [ep(ip) for ip in ips])
    for name in targets or ("t",):
        ns.create_target(name, {"service": "svc"})


def test_deleting_a_target_needs_no_finalizer_and_collects_its_configmap(
    ns: Namespace,
    operator_factory: Callable[..., OperatorProcess],
) -> None:
    op = operator_factory()
    svc_targeted(ns, [pod_ip(121)], "a", "b")
    ns.wait_published("a", {pod_ip(121)})
    ns.wait_published("b", {pod_ip(121)})
    custom = client.CustomObjectsApi(ns.api)
    for name in ("a", "b"):
        meta = ns.get_target(name)["metadata"]
        assert not meta.get("finalizers")
        assert not any("kopf" in k for k in meta.get("annotations") or {})

    # The operator never wrote on the objects it only reads.
    for s in client.DiscoveryV1Api(ns.api).list_namespaced_endpoint_slice(ns.name).items:
        assert not s.metadata.finalizers
        assert not any("kopf" in k for k in (s.metadata.annotations or {}))
    svc = client.CoreV1Api(ns.api).read_namespaced_service("svc", ns.name)
    assert not any("kopf" in k for k in (svc.metadata.annotations or {}))

    custom.delete_namespaced_custom_object(GROUP, VERSION, ns.name, PLURAL, "a")
    until(
        lambda: ns.get_configmap("a") is None,
        timeout_s=60,
        message="ConfigMap a collected",
    )

    # With the operator down, a GrpcTarget is still deleted at once.
    op.stop()
    custom.delete_namespaced_custom_object(GROUP, VERSION, ns.name, PLURAL, "b")
    with pytest.raises(client.ApiException) as exc:
        ns.get_target("b")
    assert exc.value.status == 404
    until(
        lambda: ns.get_configmap("b") is None,
        timeout_s=60,
        message="ConfigMap b collected",
    )


def test_restart_converges_and_keeps_the_revision_monotonic(
    ns: Namespace,
    operator_factory: Callable[..., OperatorProcess],
) -> None:
    op = operator_factory()
    svc_targeted(ns, [pod_ip(131)])
    before = ns.wait_published("t", {pod_ip(131)})
    op.kill()  # no clean exit

    # Changes while no operator runs.
    ns.make_slice("svc", "svc-1", [ep(pod_ip(132))])
    ns.make_slice("svc", "svc-2", [ep(pod_ip(133))])

    # (Until the killed replica's Lease expires, the new one waits.)
    second = operator_factory()
    after = ns.wait_published("t", {pod_ip(132), pod_ip(133)})
    assert after.revision == before.revision + 1
    until(
        lambda: ns.get_target("t")["status"]["revision"] == after.revision,
        timeout_s=30,
        message="status revision",
    )

    # An unchanged world after another (clean) restart: no new revision, no write.
    cm = ns.get_configmap("t")
    assert cm is not None
    second.stop()
    with ConfigMapWrites(ns.api, ns.name, "t", cm.metadata.resource_version) as writes:
        op2 = operator_factory()
        gauge = f'kuberesolver_operator_endpoints{{namespace="{ns.name}",state="ready",target="t"}}'
        until(
            lambda: gauge in op2.metrics(),
            timeout_s=60,
            message="the restarted operator reconciled t",
        )
        assert writes.snapshot() == []
        ns.make_slice("svc", "svc-3", [ep(pod_ip(134))])
        ns.wait_published("t", {pod_ip(132), pod_ip(133), pod_ip(134)})
        (version,) = until(writes.snapshot, timeout_s=30, message="the write seen")
    assert decode(version[ENDPOINTS_KEY]).revision == after.revision + 1


def test_apiserver_restart_during_churn_loses_no_update(
    ns: Namespace,
    control_plane: ControlPlane,
    operator: OperatorProcess,
) -> None:
    ns.service("churn")
    ns.make_slice("churn", "churn-1", [ep(pod_ip(141))])
    ns.create_target("churn", {"service": "churn"})
    ns.wait_published("churn", {pod_ip(141)})

    stop = threading.Event()
    last: list[int] = [1]

    def churn() -> None:
        api = api_client(control_plane.admin_kubeconfig)
        n = 1
        try:
            while not stop.is_set():
                n += 1
                try:
                    make_slice(api, ns.name, "churn", "churn-1", [ep(pod_ip(140 + n % 50 + 1))])
                    last[0] = n
                except Exception:  # the apiserver is down for a while: keep trying
                    pass
                stop.wait(0.1)
        finally:
            api.close()

    worker = threading.Thread(target=churn, daemon=True)
    worker.start()
    try:
        control_plane.restart_apiserver()
        until(lambda: last[0] > 20, timeout_s=60, message="churn after the restart")
    finally:
        stop.set()
        worker.join(30)
    final = {pod_ip(140 + last[0] % 50 + 1)}
    ns.wait_published("churn", final, timeout_s=120)
    assert operator.alive


def test_api_errors_publish_nothing_then_converge(ns: Namespace, operator: OperatorProcess) -> None:
    core = client.CoreV1Api(ns.api)
    # No room for one more ConfigMap in this namespace (kube-root-ca.crt may take one).
    used = len(core.list_namespaced_config_map(ns.name).items)
    core.create_namespaced_resource_quota(
        ns.name,
        {"metadata": {"name": "no-cm"}, "spec": {"hard": {"count/configmaps": str(used)}}},
    )
    # No quota controller runs here: fill in its status as it would.
    usage = {"count/configmaps": str(used)}
    core.patch_namespaced_resource_quota_status(
        "no-cm", ns.name, {"status": {"hard": usage, "used": usage}}
    )
    svc_targeted(ns, [pod_ip(151), pod_ip(152)])

    t = ns.wait_condition("t", "Ready", reason="WriteFailed")
    assert "403" in condition(t, "Ready")["message"]
    assert ns.get_configmap("t") is None
    assert "readyEndpoints" not in t["status"]  # nothing claimed as published
    assert not [e for e in ns.events_for("t") if e.reason == "Published"]

    core.delete_namespaced_resource_quota("no-cm", ns.name)
    snap = ns.wait_published("t", {pod_ip(151), pod_ip(152)}, timeout_s=90)
    assert snap.revision == 1
    until(
        lambda: condition(ns.get_target("t"), "Ready").get("status") == "True",
        timeout_s=30,
        message="Ready=True",
    )
    until(
        lambda: [e for e in ns.events_for("t") if e.reason == "Published"],
        timeout_s=30,
        message="a Published Event once it is",
    )


def test_operator_identity_is_least_privilege(operator_kubeconfig: Path) -> None:
    api = api_client(operator_kubeconfig)
    try:
        authz = client.AuthorizationV1Api(api)

        def can(verb: str, resource: str, group: str = "", **where: str) -> bool:
            attributes = {"verb": verb, "resource": resource, "group": group, **where}
            review = authz.create_self_subject_access_review(
                {"spec": {"resourceAttributes": attributes}}
            )
            return bool(review.status.allowed)

        # Its leader Lease, in its own namespace only.
        lease = {"namespace": "kuberesolver-system", "name": "kuberesolver-operator"}
        assert can("update", "leases", "coordination.k8s.io", **lease)
        assert can("get", "leases", "coordination.k8s.io", **lease)
        assert can("create", "leases", "coordination.k8s.io", namespace="kuberesolver-system")
        assert not can("update", "leases", "coordination.k8s.io", namespace="kube-system",
                       name="kuberesolver-operator")  # fmt: skip
        assert not can("update", "leases", "coordination.k8s.io", namespace="kuberesolver-system",
                       name="kube-controller-manager")  # fmt: skip
        assert not can("delete", "leases", "coordination.k8s.io", **lease)

        assert can("watch", "endpointslices", "discovery.k8s.io")
        assert can("watch", "services")
        assert can("create", "configmaps")
        assert can("patch", "grpctargets/status", "kuberesolver.io")
        assert not can("get", "secrets")
        assert not can("patch", "endpointslices", "discovery.k8s.io")
        assert not can("update", "services")
        assert not can("delete", "configmaps")
        assert not can("create", "pods")
        assert not can("list", "configmaps")  # only its own, by name
        assert not can("patch", "grpctargets", "kuberesolver.io")  # status only
        assert not can("patch", "endpointslices", "discovery.k8s.io")
    finally:
        api.close()


def test_forbidden_slices_never_publish_an_empty_snapshot(
    ns: Namespace,
    control_plane: ControlPlane,
    operator_factory: Callable[..., OperatorProcess],
) -> None:
    op = operator_factory()
    svc_targeted(ns, [pod_ip(191), pod_ip(192)])
    ns.wait_published("t", {pod_ip(191), pod_ip(192)})
    op.stop()  # a clean stop releases the Lease
    before = ns.get_configmap("t")
    assert before is not None

    # The same operator, leading, but its identity may not read EndpointSlices.
    rbac = client.RbacAuthorizationV1Api(ns.api)
    role = rbac.read_cluster_role("kuberesolver-operator")
    name = f"crippled-{ns.name}"
    rules = [r for r in role.rules if "endpointslices" not in (r.resources or [])]
    subjects = [{"kind": "ServiceAccount", "name": name, "namespace": "kuberesolver-system"}]
    rbac.create_cluster_role({"metadata": {"name": name}, "rules": [r.to_dict() for r in rules]})
    client.CoreV1Api(ns.api).create_namespaced_service_account(
        "kuberesolver-system", {"metadata": {"name": name}}
    )
    rbac.create_cluster_role_binding({
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": subjects,
    })  # fmt: skip
    rbac.create_namespaced_role_binding("kuberesolver-system", {
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                    "name": "kuberesolver-operator-leader"},
        "subjects": subjects,
    })  # fmt: skip
    crippled: OperatorProcess | None = None
    try:
        with ConfigMapWrites(ns.api, ns.name, "t", before.metadata.resource_version) as writes:
            token = service_account_token(ns.api, "kuberesolver-system", name)
            kubeconfig = control_plane.token_kubeconfig(name, token, "kuberesolver-system")
            crippled = OperatorProcess(kubeconfig, name="crippled")
            crippled.start()
            ns.make_slice("svc", "svc-1", [ep(pod_ip(193))])
            # It leads: it holds the Lease and has renewed it twice (two retry periods,
            # many coalescing windows), so a careless operator would have written by now.
            renewals: set[str] = set()

            def led_twice() -> bool:
                lease = client.CoordinationV1Api(ns.api).read_namespaced_lease(
                    "kuberesolver-operator", "kuberesolver-system"
                )
                assert crippled is not None
                if lease.spec.holder_identity == crippled.identity:
                    renewals.add(str(lease.spec.renew_time))
                return len(renewals) >= 3

            until(led_twice, timeout_s=60, message="the crippled replica leading for two renewals")
            assert writes.snapshot() == []
            after = ns.get_configmap("t")
            assert after is not None
            assert after.metadata.resource_version == before.metadata.resource_version
            crippled.stop()

            # A replica that may read the slices publishes the change: it was real.
            operator_factory()
            ns.wait_published("t", {pod_ip(193)})
            first, *_ = until(writes.snapshot, timeout_s=30, message="the write seen")
            assert {e.address for e in decode(first[ENDPOINTS_KEY]).endpoints} == {pod_ip(193)}
    finally:
        if crippled is not None:
            crippled.stop()
        rbac.delete_namespaced_role_binding(name, "kuberesolver-system")
        rbac.delete_cluster_role_binding(name)
        rbac.delete_cluster_role(name)
        client.CoreV1Api(ns.api).delete_namespaced_service_account(name, "kuberesolver-system")
