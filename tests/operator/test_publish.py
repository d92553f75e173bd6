"""The operator against the real control plane: slices in, ConfigMap out.

Every test runs the operator as a subprocess under the RBAC in manifests/ and
sets up its world as admin in a fresh namespace. Slices come from the real
endpointslice controller (Pods whose status the test sets), except where a
test needs to delete one slice: then the Service has no selector and the test
writes the slices itself, as any controller may.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client

from kuberesolver.snapshot import ENDPOINTS_KEY, SERVICE_CONFIG_KEY, Snapshot, decode
from testenv.netns import pod_ip
from testenv.workloads import create_node, create_pod, create_service, endpoint_slices
from tests.operator.conftest import (
    OperatorProcess,
    condition,
    create_target,
    get_configmap,
    get_target,
    wait_for,
)

pytestmark = pytest.mark.integration

NODE = "node-a"


def snapshot_of(api: client.ApiClient, namespace: str, name: str) -> Snapshot | None:
    cm = get_configmap(api, namespace, name)
    if cm is None or not cm.data or ENDPOINTS_KEY not in cm.data:
        return None
    return decode(cm.data[ENDPOINTS_KEY])


def addresses(snap: Snapshot | None) -> set[str]:
    return {e.hostport for e in snap.endpoints} if snap else set()


def wait_addresses(
    api: client.ApiClient, namespace: str, name: str, want: set[str], timeout_s: float = 60
) -> Snapshot:
    def check() -> Snapshot | None:
        snap = snapshot_of(api, namespace, name)
        return snap if snap is not None and addresses(snap) == want else None

    result: Snapshot = wait_for(check, timeout_s, f"snapshot {namespace}/{name} == {sorted(want)}")
    return result


def make_pods(
    api: client.ApiClient, namespace: str, app: str, ips_ports: list[tuple[str, int]]
) -> None:
    create_node(api, NODE, zone="zone-a")
    for i, (ip, port) in enumerate(ips_ports):
        create_pod(
            api, namespace, f"{app}-{i}", ip, NODE, {"app": app},
            container_ports=({"name": "grpc", "containerPort": port},),
        )  # fmt: skip


def test_three_slices_merge_into_one_snapshot(
    admin_api: client.ApiClient, namespace: str, operator: OperatorProcess
) -> None:
    # A named targetPort whose number differs per pod: the controller writes
    # one EndpointSlice per distinct port, here three.
    create_service(
        admin_api, namespace, "greeter",
        ports=({"name": "grpc", "port": 8080, "targetPort": "grpc"},),
    )  # fmt: skip
    pods = [(pod_ip(11), 50051), (pod_ip(12), 50052), (pod_ip(13), 50053), (pod_ip(14), 50051)]
    make_pods(admin_api, namespace, "greeter", pods)
    wait_for(lambda: len(endpoint_slices(admin_api, namespace, "greeter")) == 3, 60, "3 slices")
    create_target(admin_api, namespace, "greeter", {"service": "greeter", "port": "grpc"})

    snap = wait_addresses(admin_api, namespace, "greeter", {f"{ip}:{p}" for ip, p in pods})
    assert snap.target.port_name == "grpc"
    assert snap.target.port_number == 8080
    assert snap.server_name == f"greeter.{namespace}"
    assert all(e.ready and e.node == NODE and e.zone == "zone-a" for e in snap.endpoints)
    assert {e.pod for e in snap.endpoints} == {f"greeter-{i}" for i in range(4)}
    assert [e.address for e in snap.endpoints] == sorted(e.address for e in snap.endpoints)

    cm = get_configmap(admin_api, namespace, "greeter")
    assert cm is not None
    assert json.loads(cm.data[SERVICE_CONFIG_KEY]) == {"loadBalancingConfig": [{"round_robin": {}}]}
    assert cm.metadata.labels["app.kubernetes.io/managed-by"] == "kuberesolver"
    assert cm.metadata.labels["kuberesolver.io/target"] == "greeter"
    (owner,) = cm.metadata.owner_references
    target = get_target(admin_api, namespace, "greeter")
    assert (owner.kind, owner.name, owner.uid, owner.controller) == (
        "GrpcTarget", "greeter", target["metadata"]["uid"], True,
    )  # fmt: skip

    def status_ok() -> dict[str, Any] | None:
        t = get_target(admin_api, namespace, "greeter")
        st = t.get("status") or {}
        ok = st.get("readyEndpoints") == 4 and condition(t, "Ready").get("status") == "True"
        return st if ok else None

    status = wait_for(status_ok, 30, "status Ready with 4 endpoints")
    assert status["totalEndpoints"] == 4
    assert status["revision"] == snap.revision
    assert status["observedGeneration"] == target["metadata"]["generation"]
    assert status["configMapName"] == "greeter"
    assert condition(target, "ServiceFound").get("status") in ("True", None)
