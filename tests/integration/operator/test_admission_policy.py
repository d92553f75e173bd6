"""Confined writes: the ValidatingAdmissionPolicy of manifests/admissionpolicy.yaml, enforced
by the real apiserver on the operator's ServiceAccount (exactly manifests/rbac.yaml).

RBAC lets that identity create and update any ConfigMap; the policy lets it write only
ConfigMaps labelled ``app.kubernetes.io/managed-by: kuberesolver`` and owned by a
GrpcTarget, and update only ConfigMaps a GrpcTarget already owns. The session installs
it with the rest of manifests/ (tests/cluster.py), so every operator test runs under it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from testenv.kube import api_client
from testenv.netns import pod_ip
from testenv.operator_process import OperatorProcess
from testenv.wait import until
from tests.cluster import MANIFESTS
from tests.integration.operator.helpers import Namespace, ep

pytestmark = pytest.mark.integration

POLICY = MANIFESTS / "admissionpolicy.yaml"
OWNERSHIP_LABEL = {"app.kubernetes.io/managed-by": "kuberesolver"}


def _policy() -> dict[str, Any]:
    (policy,) = (d for d in yaml.safe_load_all(POLICY.read_text()) if d["kind"].endswith("Policy"))
    return dict(policy)


NAME = _policy()["metadata"]["name"]
MUST_BE_OURS, MUST_HAVE_BEEN_OURS = (v["message"] for v in _policy()["spec"]["validations"])


def _owner(name: str = "greeter", uid: str | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "kuberesolver.io/v1alpha1",
        "kind": "GrpcTarget",
        "name": name,
        "uid": uid or str(uuid.uuid4()),
        "controller": True,
        "blockOwnerDeletion": False,
    }


def _configmap(
    name: str, labels: dict[str, str] | None = None, owner: dict[str, Any] | None = None
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": labels or {}}
    if owner is not None:
        meta["ownerReferences"] = [owner]
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"k": "v"}}


def _refused(call: Any, message: str) -> None:
    """``call()`` is refused at admission (422 Invalid) with the policy's ``message``."""
    with pytest.raises(client.ApiException) as info:
        call()
    assert info.value.status == 422, info.value.body
    assert NAME in info.value.body, info.value.body
    assert message in info.value.body, info.value.body


@pytest.fixture(scope="module")
def operator_core(operator_kubeconfig: Path) -> Iterator[client.CoreV1Api]:
    """The operator's own identity: its ServiceAccount token, exactly manifests/rbac.yaml."""
    api = api_client(operator_kubeconfig)
    yield client.CoreV1Api(api)
    api.close()  # type: ignore[no-untyped-call]


@pytest.fixture(scope="module")
def in_force(operator_core: client.CoreV1Api, admin_api: client.ApiClient) -> None:
    """Wait until the apiserver enforces the policy: a dry-run create it must refuse is refused.

    A new policy reaches the admission plugin through an informer, a moment after it is
    stored; a dry run has no side effect either way.
    """
    probe = _configmap(f"probe-{uuid.uuid4().hex[:8]}")

    def refused() -> bool:
        try:
            operator_core.create_namespaced_config_map("kuberesolver-system", probe, dry_run="All")
        except client.ApiException as exc:
            if exc.status == 422 and MUST_BE_OURS in exc.body:
                return True
            raise
        return False

    until(refused, timeout_s=30, message=f"{NAME} to be enforced", retry_on=())


@pytest.fixture
def kube_system_configmap(admin_api: client.ApiClient) -> Iterator[str]:
    """A ConfigMap in kube-system that is not the operator's, created by the admin."""
    core = client.CoreV1Api(admin_api)
    name = f"cluster-settings-{uuid.uuid4().hex[:8]}"
    core.create_namespaced_config_map("kube-system", _configmap(name))
    yield name
    try:
        core.delete_namespaced_config_map(name, "kube-system")
    except client.ApiException as exc:  # a take-over that got through: gone with its "owner"
        if exc.status != 404:
            raise


def test_the_policy_type_checks_cleanly(admin_api: client.ApiClient, in_force: None) -> None:
    """Every expression compiles and type-checks against ConfigMap on this Kubernetes."""
    reg = client.AdmissionregistrationV1Api(admin_api)

    def checked() -> client.V1ValidatingAdmissionPolicy:
        policy = reg.read_validating_admission_policy(NAME)
        assert policy.status, "no status yet"
        assert policy.status.observed_generation == policy.metadata.generation
        return policy

    checking = until(checked, timeout_s=30, message=f"{NAME} to be type-checked").status
    assert not (checking.type_checking and checking.type_checking.expression_warnings), checking
    binding = reg.read_validating_admission_policy_binding(NAME)
    assert binding.spec.validation_actions == ["Deny"]


def _replace_refused(
    operator_core: client.CoreV1Api, admin_api: client.ApiClient, current: Any, message: str
) -> Any:
    """The operator's replace of ``current`` in kube-system is refused with ``message``; the
    ConfigMap is as it was (read as admin), and returned."""
    name = current.metadata.name
    _refused(
        lambda: operator_core.replace_namespaced_config_map(name, "kube-system", current), message
    )
    kept = client.CoreV1Api(admin_api).read_namespaced_config_map(name, "kube-system")
    assert kept.data == {"k": "v"}
    return kept


@pytest.fixture
def current(operator_core: client.CoreV1Api, kube_system_configmap: str, in_force: None) -> Any:
    """The kube-system ConfigMap as the operator reads it, with the policy in force."""
    return operator_core.read_namespaced_config_map(kube_system_configmap, "kube-system")


def test_an_update_in_kube_system_is_refused(
    operator_core: client.CoreV1Api, admin_api: client.ApiClient, current: Any
) -> None:
    current.data = {"k": "rewritten"}
    _replace_refused(operator_core, admin_api, current, MUST_BE_OURS)


def test_taking_a_configmap_over_by_labelling_and_owning_it_is_refused(
    operator_core: client.CoreV1Api, admin_api: client.ApiClient, current: Any
) -> None:
    """The new object would pass; what it was decides: no GrpcTarget owned it."""
    current.metadata.labels = OWNERSHIP_LABEL
    current.metadata.owner_references = [_owner()]
    current.data = {"k": "rewritten"}
    kept = _replace_refused(operator_core, admin_api, current, MUST_HAVE_BEEN_OURS)
    assert not kept.metadata.owner_references


def test_a_create_in_kube_system_is_refused(
    operator_core: client.CoreV1Api, admin_api: client.ApiClient, in_force: None
) -> None:
    name = f"planted-{uuid.uuid4().hex[:8]}"
    _refused(
        lambda: operator_core.create_namespaced_config_map("kube-system", _configmap(name)),
        MUST_BE_OURS,
    )
    names = {
        cm.metadata.name
        for cm in client.CoreV1Api(admin_api).list_namespaced_config_map("kube-system").items
    }
    assert name not in names


@pytest.mark.parametrize(
    ("labels", "owned"),
    [(OWNERSHIP_LABEL, False), ({}, True), ({"app.kubernetes.io/managed-by": "helm"}, True)],
    ids=["labelled-without-owner", "owned-without-label", "owned-labelled-by-another"],
)
def test_a_configmap_lacking_either_mark_is_refused(
    operator_core: client.CoreV1Api,
    namespace: str,
    labels: dict[str, str],
    owned: bool,
    in_force: None,
) -> None:
    body = _configmap("greeter", labels, _owner() if owned else None)
    _refused(lambda: operator_core.create_namespaced_config_map(namespace, body), MUST_BE_OURS)


def test_the_operator_creates_and_updates_its_configmaps_as_before(
    ns: Namespace, operator: OperatorProcess, in_force: None
) -> None:
    ns.service("greeter")
    ns.make_slice("greeter", "greeter-a", [ep(pod_ip(21), ready=True)])
    ns.create_target("greeter", {"service": "greeter", "port": "grpc"})
    ns.wait_addresses("greeter", {f"{pod_ip(21)}:50051"})  # created

    ns.make_slice("greeter", "greeter-a", [ep(pod_ip(21), ready=True), ep(pod_ip(22), ready=True)])
    ns.wait_addresses("greeter", {f"{pod_ip(21)}:50051", f"{pod_ip(22)}:50051"})  # updated
    ns.wait_condition("greeter", "Ready", status="True", reason="Published")
    cm = ns.get_configmap("greeter")
    assert cm is not None
    assert cm.metadata.labels["app.kubernetes.io/managed-by"] == "kuberesolver"
    (owner,) = cm.metadata.owner_references
    assert (owner.api_version, owner.kind, owner.name) == (
        "kuberesolver.io/v1alpha1",
        "GrpcTarget",
        "greeter",
    )
