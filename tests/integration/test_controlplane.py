"""The test control plane itself: real validation, real EndpointSlices, real RBAC, clean stop."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psutil
import pytest
from kubernetes import client, watch

from testenv import ControlPlane, kubernetes_version
from testenv.kube import api_client
from testenv.netns import pod_ip
from testenv.wait import until
from testenv.workloads import (
    create_node,
    create_pod,
    create_service,
    set_pod_status,
    slice_addresses,
)

pytestmark = pytest.mark.integration

GROUP, VERSION, PLURAL = "kuberesolver.io", "v1alpha1", "grpctargets"


def _grpctarget(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "GrpcTarget",
        "metadata": {"name": name},
        "spec": spec,
    }


def _create_rejected(api: client.ApiClient, namespace: str, spec: dict[str, Any]) -> str:
    with pytest.raises(client.ApiException) as info:
        client.CustomObjectsApi(api).create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, _grpctarget("bad", spec)
        )
    assert info.value.status == 422, info.value.body
    return str(info.value.body)


def test_the_apiserver_is_the_kubernetes_chosen(admin_api: client.ApiClient) -> None:
    """KUBERESOLVER_TESTENV_KUBERNETES=oldest runs the oldest supported version, not the newest."""
    assert client.VersionApi(admin_api).get_code().git_version == kubernetes_version()


def test_crd_accepts_a_valid_grpctarget(admin_api: client.ApiClient, namespace: str) -> None:
    objs = client.CustomObjectsApi(admin_api)
    for name, port in (("by-name", "grpc"), ("by-number", 8080), ("first-port", "")):
        objs.create_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            _grpctarget(name, {"service": "greeter", "port": port}),
        )
    got = objs.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "by-name")
    assert got["spec"]["loadBalancing"] == "round_robin"  # the schema's default
    assert got["spec"]["includeTerminating"] is False


def test_crd_rejects_missing_service(admin_api: client.ApiClient, namespace: str) -> None:
    body = _create_rejected(admin_api, namespace, {"port": 8080})
    assert "spec.service: Required value" in body


@pytest.mark.parametrize("port", [0, 70000])
def test_crd_rejects_port_out_of_range(
    admin_api: client.ApiClient, namespace: str, port: int
) -> None:
    body = _create_rejected(admin_api, namespace, {"service": "greeter", "port": port})
    assert "spec.port" in body
    assert ("greater than or equal to 1" if port == 0 else "less than or equal to 65535") in body


@pytest.mark.parametrize("port", [True, 80.5, ["grpc"], {"name": "grpc"}])
def test_crd_rejects_port_of_wrong_type(
    admin_api: client.ApiClient, namespace: str, port: object
) -> None:
    body = _create_rejected(admin_api, namespace, {"service": "greeter", "port": port})
    assert "spec.port" in body


def test_crd_rejects_unknown_policy(admin_api: client.ApiClient, namespace: str) -> None:
    body = _create_rejected(
        admin_api, namespace, {"service": "greeter", "loadBalancing": "least_request"}
    )
    assert "spec.loadBalancing: Unsupported value" in body


def test_endpointslices_follow_pods(admin_api: client.ApiClient, namespace: str) -> None:
    create_node(admin_api, "node-a", zone="zone-a")
    create_service(admin_api, namespace, "greeter")
    ips = [pod_ip(11), pod_ip(12), pod_ip(13)]
    for i, ip in enumerate(ips):
        create_pod(admin_api, namespace, f"greeter-{i}", ip, "node-a", {"app": "greeter"})

    def all_ready() -> bool:
        assert slice_addresses(admin_api, namespace, "greeter") == dict.fromkeys(ips, True)
        return True

    until(all_ready, timeout_s=30, message="3 ready endpoints in the slices")

    set_pod_status(admin_api, namespace, "greeter-1", ready=False)

    def one_not_ready() -> bool:
        got = slice_addresses(admin_api, namespace, "greeter")
        assert got == {ips[0]: True, ips[1]: False, ips[2]: True}
        return True

    until(one_not_ready, timeout_s=30, message="greeter-1 not ready in the slices")


def test_operator_identity_has_exactly_its_rbac(operator_kubeconfig: Path, namespace: str) -> None:
    api = api_client(operator_kubeconfig)
    try:
        # It can list and watch EndpointSlices in every namespace...
        discovery = client.DiscoveryV1Api(api)
        stream = watch.Watch().stream(
            discovery.list_endpoint_slice_for_all_namespaces, timeout_seconds=1
        )
        for _ in stream:
            pass
        # ...and write ConfigMaps...
        review = client.AuthorizationV1Api(api).create_self_subject_access_review(
            {
                "spec": {
                    "resourceAttributes": {
                        "verb": "create",
                        "resource": "configmaps",
                        "namespace": namespace,
                    }
                }
            }
        )
        assert review.status.allowed
        # ...but it may not read Secrets, nor delete anything.
        with pytest.raises(client.ApiException) as info:
            client.CoreV1Api(api).list_namespaced_secret(namespace)
        assert info.value.status == 403
        assert "kuberesolver-operator" in str(info.value.body)
        for verb, resource in (("delete", "configmaps"), ("create", "pods"), ("get", "secrets")):
            review = client.AuthorizationV1Api(api).create_self_subject_access_review(
                {
                    "spec": {
                        "resourceAttributes": {
                            "verb": verb,
                            "resource": resource,
                            "namespace": namespace,
                        }
                    }
                }
            )
            assert not review.status.allowed, (verb, resource)
        who = client.AuthenticationV1Api(api).create_self_subject_review({})
        assert who.status.user_info.username == (
            "system:serviceaccount:kuberesolver-system:kuberesolver-operator"
        )
        assert "system:masters" not in (who.status.user_info.groups or [])
    finally:
        api.close()


def test_stop_leaves_no_process_behind(tmp_path: Path) -> None:
    cp = ControlPlane(workdir=tmp_path / "cp")
    cp.start()
    procs = [psutil.Process(pid) for pid in cp.pids()]
    procs += [child for p in procs for child in p.children(recursive=True)]
    assert {Path(p.cmdline()[0]).name for p in procs} >= {
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
    }
    cp.stop()
    cp.stop()  # idempotent
    alive = [p for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert alive == []
    assert cp.processes == {}
