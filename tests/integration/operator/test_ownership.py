"""Cross-namespace consent, and ConfigMaps the operator does not own."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from kuberesolver.core.snapshot import ENDPOINTS_KEY, SnapshotError, decode
from testenv.netns import pod_ip
from testenv.operator_process import OperatorProcess
from testenv.wait import until
from tests.integration.operator.helpers import (
    Namespace,
    condition,
    ep,
    get_configmap,
    make_slice,
    selectorless_service,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def other_namespace(admin_api: client.ApiClient, namespace: str) -> Any:
    name = f"{namespace}-svc"
    core = client.CoreV1Api(admin_api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name, propagation_policy="Background")


def test_cross_namespace_is_refused_without_consent_then_granted(
    ns: Namespace,
    other_namespace: str,
    operator: OperatorProcess,
) -> None:
    selectorless_service(ns.api, other_namespace, "shared")
    make_slice(ns.api, other_namespace, "shared", "shared-1", [ep(pod_ip(101))])
    ns.create_target("remote", {"service": "shared", "serviceNamespace": other_namespace})

    def refused() -> dict[str, Any]:
        t = ns.get_target("remote")
        assert condition(t, "ServiceFound").get("reason") == "CrossNamespaceRefused"
        return t

    t = until(refused, timeout_s=60, message="CrossNamespaceRefused")
    assert condition(t, "Ready")["status"] == "False"
    assert "kuberesolver.io/allowed-namespaces" in condition(t, "Ready")["message"]
    ns.wait_event("remote", reason="CrossNamespaceRefused", type="Warning")
    # Nothing of the other namespace is published: an empty snapshot, as for a missing Service.
    assert until(
        lambda: published_ips(ns.api, ns.name, "remote") == set(),
        timeout_s=30,
        message="empty",
    )

    # Consent for another namespace only: still refused.
    core = client.CoreV1Api(ns.api)
    annotation = "kuberesolver.io/allowed-namespaces"
    core.patch_namespaced_service(
        "shared", other_namespace, {"metadata": {"annotations": {annotation: "someone-else"}}}
    )
    core.patch_namespaced_service(
        "shared", other_namespace,
        {"metadata": {"annotations": {annotation: f"someone-else, {ns.name}"}}},
    )  # fmt: skip

    def published() -> Any:
        snap = ns.snapshot_of("remote")
        assert {e.address for e in snap.endpoints} == {pod_ip(101)}
        return snap

    snap = until(published, timeout_s=60, message="published after consent")
    assert (snap.target.service, snap.target.namespace) == ("shared", other_namespace)
    assert snap.server_name == f"shared.{other_namespace}"
    t = ns.wait_condition("remote", "Ready", timeout_s=30, status="True")
    assert condition(t, "ServiceFound")["status"] == "True"


def test_withdrawn_consent_publishes_an_empty_snapshot_at_once(
    ns: Namespace,
    other_namespace: str,
    operator: OperatorProcess,
) -> None:
    annotation = "kuberesolver.io/allowed-namespaces"
    selectorless_service(ns.api, other_namespace, "shared", annotations={annotation: ns.name})
    make_slice(ns.api, other_namespace, "shared", "shared-1", [ep(pod_ip(111))])
    ns.create_target("remote", {"service": "shared", "serviceNamespace": other_namespace})
    granted = until(
        lambda: (s := ns.snapshot_of("remote")).endpoints and s,
        timeout_s=60,
        message="published with consent",
    )
    core = client.CoreV1Api(ns.api)
    for withdrawn in ({annotation: "someone-else"}, {annotation: None}):
        # The annotation no longer names the namespace, then it is removed altogether.
        core.patch_namespaced_service(
            "shared", other_namespace, {"metadata": {"annotations": withdrawn}}
        )
        empty = until(
            lambda: (s := ns.snapshot_of("remote")).endpoints == () and s,
            timeout_s=30,
            message=f"an empty snapshot after {withdrawn}",
        )
        assert empty.revision == granted.revision + 1  # one new revision, straight to empty
        t = ns.wait_condition("remote", "Ready", timeout_s=30, reason="CrossNamespaceRefused")
        assert condition(t, "Ready")["status"] == "False"
        assert t["status"]["totalEndpoints"] == 0
        core.patch_namespaced_service(
            "shared", other_namespace, {"metadata": {"annotations": {annotation: ns.name}}}
        )
        granted = until(
            lambda: (s := ns.snapshot_of("remote")).endpoints and s,
            timeout_s=30,
            message="published again with consent",
        )
        assert {e.address for e in granted.endpoints} == {pod_ip(111)}


def snapshot_of(api: client.ApiClient, namespace: str, name: str) -> Any:
    cm = get_configmap(api, namespace, name)
    assert cm is not None, "no ConfigMap yet"
    return decode(cm.data[ENDPOINTS_KEY])


def published_ips(api: client.ApiClient, namespace: str, name: str) -> set[str] | None:
    cm = get_configmap(api, namespace, name)
    if cm is None:
        return None
    return {e.address for e in decode(cm.data[ENDPOINTS_KEY]).endpoints}


def test_a_configmap_it_does_not_own_is_left_untouched(
    ns: Namespace, operator: OperatorProcess
) -> None:
    core = client.CoreV1Api(ns.api)
    core.create_namespaced_config_map(
        ns.name, {"metadata": {"name": "mine"}, "data": {"hello": "world"}}
    )
    ns.service("svc")
    ns.make_slice("svc", "svc-1", [ep(pod_ip(111))])
    ns.create_target("tgt", {"service": "svc", "configMapName": "mine"})

    t = ns.wait_condition("tgt", "Ready", reason="ConfigMapConflict")
    assert "not owned" in condition(t, "Ready")["message"]
    cm = ns.get_configmap("mine")
    assert cm is not None
    assert cm.data == {"hello": "world"}
    assert not cm.metadata.owner_references

    # Once the ConfigMap is gone, the operator creates its own.
    core.delete_namespaced_config_map("mine", ns.name)

    def owned() -> Any:
        cm = ns.get_configmap("mine")
        assert cm is not None
        assert cm.metadata.owner_references
        return cm

    cm = until(owned, timeout_s=90, message="the operator's ConfigMap")
    assert ENDPOINTS_KEY in cm.data


def test_a_configmap_edited_by_hand_is_repaired_on_resync(
    ns: Namespace, operator_factory: Any
) -> None:
    operator_factory(env={"KUBERESOLVER_RESYNC_S": "2"})
    ns.service("svc")
    ns.make_slice("svc", "svc-1", [ep(pod_ip(121))])
    ns.create_target("fix", {"service": "svc"})

    def good() -> Any:
        cm = ns.get_configmap("fix")
        assert cm is not None
        try:
            snap = decode(cm.data[ENDPOINTS_KEY])
        except SnapshotError as exc:
            raise AssertionError(str(exc)) from exc
        assert {e.address for e in snap.endpoints} == {pod_ip(121)}
        return cm

    original = until(good, timeout_s=60, message="published").data
    core = client.CoreV1Api(ns.api)
    core.patch_namespaced_config_map(
        "fix", ns.name, {"data": {ENDPOINTS_KEY: "garbage", "extra": "x"}}
    )
    repaired = until(lambda: good().data == original and good(), timeout_s=60, message="repaired")
    assert "extra" not in repaired.data
    core.delete_namespaced_config_map("fix", ns.name)
    until(good, timeout_s=60, message="recreated")
