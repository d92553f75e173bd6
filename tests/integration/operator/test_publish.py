"""The operator against the real control plane: slices in, ConfigMap out.

Every test runs the operator as a subprocess under the RBAC in manifests/ and
sets up its world as admin in a fresh namespace. Slices come from the real
endpointslice controller (Pods whose status the test sets), except where a
test needs to delete one slice: then the Service has no selector and the test
writes the slices itself, as any controller may.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from typing import Any

import pytest
from kubernetes import client, watch

from kuberesolver.core.snapshot import ENDPOINTS_KEY, SERVICE_CONFIG_KEY, decode
from kuberesolver.operator.logic.spec import GROUP, PLURAL, VERSION
from testenv.kube import table
from testenv.netns import pod_ip
from testenv.operator_process import OperatorProcess
from testenv.wait import until
from testenv.workloads import create_node, create_pod, create_service, endpoint_slices
from tests.integration.operator.helpers import (
    ConfigMapWrites,
    Namespace,
    addresses,
    condition,
    ep,
    reconciles,
)

pytestmark = pytest.mark.integration

NODE = "node-a"


def make_pods(
    api: client.ApiClient, namespace: str, app: str, ips_ports: list[tuple[str, int]]
) -> None:
    create_node(api, NODE, zone="zone-a")
    for i, (ip, port) in enumerate(ips_ports):
        create_pod(
            api, namespace, f"{app}-{i}", ip, NODE, {"app": app},
            container_ports=({"name": "grpc", "containerPort": port},),
        )  # fmt: skip


def test_three_slices_merge_into_one_snapshot(ns: Namespace, operator: OperatorProcess) -> None:
    # A named targetPort whose number differs per pod: the controller writes
    # one EndpointSlice per distinct port, here three.
    create_service(
        ns.api, ns.name, "greeter",
        ports=({"name": "grpc", "port": 8080, "targetPort": "grpc"},),
    )  # fmt: skip
    pods = [(pod_ip(11), 50051), (pod_ip(12), 50052), (pod_ip(13), 50053), (pod_ip(14), 50051)]
    make_pods(ns.api, ns.name, "greeter", pods)
    until(
        lambda: len(endpoint_slices(ns.api, ns.name, "greeter")) == 3,
        timeout_s=60,
        message="3 slices",
    )
    ns.create_target("greeter", {"service": "greeter", "port": "grpc"})

    snap = ns.wait_addresses("greeter", {f"{ip}:{p}" for ip, p in pods})
    assert snap.target.port_name == "grpc"
    assert snap.target.port_number == 8080
    assert snap.server_name == f"greeter.{ns.name}"
    assert all(e.ready and e.node == NODE and e.zone == "zone-a" for e in snap.endpoints)
    assert {e.pod for e in snap.endpoints} == {f"greeter-{i}" for i in range(4)}
    assert [e.address for e in snap.endpoints] == sorted(e.address for e in snap.endpoints)

    cm = ns.get_configmap("greeter")
    assert cm is not None
    assert json.loads(cm.data[SERVICE_CONFIG_KEY]) == {"loadBalancingConfig": [{"round_robin": {}}]}
    assert cm.metadata.labels["app.kubernetes.io/managed-by"] == "kuberesolver"
    assert cm.metadata.labels["kuberesolver.io/target"] == "greeter"
    (owner,) = cm.metadata.owner_references
    target = ns.get_target("greeter")
    assert (owner.kind, owner.name, owner.uid, owner.controller) == (
        "GrpcTarget", "greeter", target["metadata"]["uid"], True,
    )  # fmt: skip

    def status_ok() -> dict[str, Any] | None:
        t = ns.get_target("greeter")
        st = t.get("status") or {}
        ok = st.get("readyEndpoints") == 4 and condition(t, "Ready").get("status") == "True"
        return st if ok else None

    status = until(status_ok, timeout_s=30, message="status Ready with 4 endpoints")
    assert status["totalEndpoints"] == 4
    assert status["revision"] == snap.revision
    assert status["observedGeneration"] == target["metadata"]["generation"]
    assert status["configMapName"] == "greeter"
    assert condition(target, "ServiceFound").get("status") in ("True", None)
    published = until(
        lambda: [e for e in ns.events_for("greeter") if e.reason == "Published"],
        timeout_s=30,
        message="a Published Event",
    )
    assert published[0].type == "Normal"
    # The first publication (the slices may still have been filling up then).
    assert re.match(r"\d of \d endpoints ready, revision \d+", published[0].message)
    # kubectl get gt: the printer columns.
    text = table(ns.api, f"/apis/kuberesolver.io/v1alpha1/namespaces/{ns.name}/grpctargets")
    header, row = text.splitlines()
    assert header.split()[:5] == ["NAME", "SERVICE", "PORT", "READY", "STATUS"]
    assert row.split()[:5] == ["greeter", "greeter", "grpc", "4", "Published"]


def test_scale_to_zero_publishes_an_empty_snapshot(
    ns: Namespace, operator: OperatorProcess
) -> None:
    create_service(ns.api, ns.name, "zero")
    pods = [(pod_ip(21), 50051), (pod_ip(22), 50051)]
    make_pods(ns.api, ns.name, "zero", pods)
    ns.create_target("zero", {"service": "zero"})
    before = ns.wait_addresses("zero", {f"{ip}:50051" for ip, _ in pods})

    core = client.CoreV1Api(ns.api)
    for i in range(len(pods)):
        core.delete_namespaced_pod(f"zero-{i}", ns.name, grace_period_seconds=0)
    after = ns.wait_addresses("zero", set())
    assert after.endpoints == ()
    # One pod at a time or both at once: one or two new revisions, never fewer.
    assert before.revision + 1 <= after.revision <= before.revision + 2
    t = until(
        lambda: (x := ns.get_target("zero"))["status"].get("totalEndpoints") == 0 and x,
        timeout_s=30,
        message="status with 0 endpoints",
    )
    assert condition(t, "ServiceFound")["status"] == "True"
    # Published, but no client can call it: not Ready, and the reason says why.
    assert (condition(t, "Ready")["status"], condition(t, "Ready")["reason"]) == (
        "False", "NoReadyEndpoints",
    )  # fmt: skip


def test_deleting_one_slice_removes_only_its_endpoints(
    ns: Namespace, operator: OperatorProcess
) -> None:
    ns.service("multi")
    ns.make_slice("multi", "multi-a", [ep(pod_ip(31)), ep(pod_ip(32))])
    ns.make_slice("multi", "multi-b", [ep(pod_ip(33))])
    ns.make_slice("multi", "multi-c", [ep(pod_ip(34)), ep(pod_ip(32))])
    ns.create_target("multi", {"service": "multi"})
    all_four = {f"{pod_ip(i)}:50051" for i in (31, 32, 33, 34)}
    snap = ns.wait_addresses("multi", all_four)
    assert len(snap.endpoints) == 4  # 10.244.0.32 is in two slices: listed once

    ns.delete_slice("multi-b")
    ns.wait_addresses("multi", all_four - {f"{pod_ip(33)}:50051"})
    ns.delete_slice("multi-c")
    # 32 is still in slice a, so only 34 goes.
    ns.wait_addresses("multi", {f"{pod_ip(31)}:50051", f"{pod_ip(32)}:50051"})


def test_endpoint_conditions_and_include_terminating(
    ns: Namespace, operator: OperatorProcess
) -> None:
    ns.service("conds")
    ns.make_slice("conds", "conds-1",
        [
            ep(pod_ip(41)),  # no conditions at all: ready
            ep(pod_ip(42), ready=False),  # not ready: published, marked
            ep(pod_ip(43), ready=False, serving=True, terminating=True),  # draining
            {**ep(pod_ip(44), ready=True), "zone": "zone-b", "nodeName": "n4",
             "targetRef": {"kind": "Pod", "name": "conds-44", "namespace": ns.name}},
        ],
    )  # fmt: skip
    ns.create_target("conds", {"service": "conds"})
    snap = ns.wait_addresses("conds", {f"{pod_ip(i)}:50051" for i in (41, 42, 44)})
    by_ip = {e.address: e for e in snap.endpoints}
    assert by_ip[pod_ip(41)].ready is True
    assert by_ip[pod_ip(41)].serving is True
    assert by_ip[pod_ip(42)].ready is False
    e44 = by_ip[pod_ip(44)]
    assert (e44.zone, e44.node, e44.pod) == ("zone-b", "n4", "conds-44")
    until(
        lambda: ns.get_target("conds")["status"].get("readyEndpoints") == 2,
        timeout_s=30,
        message="2 ready of 3",
    )

    ns.patch_target("conds", {"includeTerminating": True})
    snap = ns.wait_addresses("conds", {f"{pod_ip(i)}:50051" for i in (41, 42, 43, 44)})
    e43 = {e.address: e for e in snap.endpoints}[pod_ip(43)]
    assert (e43.ready, e43.serving, e43.terminating) == (False, True, True)


def test_port_by_number_and_address_family(ns: Namespace, operator: OperatorProcess) -> None:
    ns.service("dual",
        ports=[
            {"name": "http", "port": 80, "targetPort": 8000, "protocol": "TCP"},
            {"name": "grpc", "port": 8080, "targetPort": 50051, "protocol": "TCP"},
        ],
    )  # fmt: skip
    ports = [
        {"name": "http", "port": 8000, "protocol": "TCP"},
        {"name": "grpc", "port": 50051, "protocol": "TCP"},
    ]
    ns.make_slice("dual", "dual-v4", [ep(pod_ip(51))], ports=ports)
    ns.make_slice("dual", "dual-v6", [ep("fd00::51")], ports=ports, address_type="IPv6")
    ns.create_target("dual", {"service": "dual", "port": 8080})
    snap = ns.wait_addresses("dual", {f"{pod_ip(51)}:50051"})
    assert (snap.target.port, snap.target.port_name, snap.target.port_number) == (
        8080,
        "grpc",
        8080,
    )

    ns.patch_target("dual", {"port": "", "addressFamily": "IPv6"})
    snap = ns.wait_addresses("dual", {"[fd00::51]:8000"})
    assert snap.target.port_name == "http"  # empty port: the first one

    ns.patch_target("dual", {"port": "nope"})

    def refused() -> dict[str, Any] | None:
        t = ns.get_target("dual")
        c = condition(t, "Ready")
        return t if c.get("reason") == "PortNotFound" else None

    t = until(refused, timeout_s=30, message="Ready=False PortNotFound")
    assert "http:80, grpc:8080" in condition(t, "Ready")["message"]
    # The last good ConfigMap stays.
    assert addresses(ns.snapshot_of("dual")) == {"[fd00::51]:8000"}


def test_missing_service_publishes_empty_then_recovers(
    ns: Namespace, operator: OperatorProcess
) -> None:
    ns.create_target("ghost", {"service": "ghost", "configMapName": "ghost-cm"})

    def not_found() -> dict[str, Any] | None:
        t = ns.get_target("ghost")
        return t if condition(t, "ServiceFound").get("status") == "False" else None

    t = until(not_found, timeout_s=60, message="ServiceFound=False")
    assert condition(t, "ServiceFound")["reason"] == "ServiceNotFound"
    assert (condition(t, "Ready")["status"], condition(t, "Ready")["reason"]) == (
        "False", "ServiceNotFound",
    )  # fmt: skip
    # kubectl get gt: the STATUS column names the cause, never "Published".
    text = table(ns.api, f"/apis/kuberesolver.io/v1alpha1/namespaces/{ns.name}/grpctargets")
    assert text.splitlines()[1].split()[:4] == ["ghost", "ghost", "0", "ServiceNotFound"]
    snap = ns.wait_addresses("ghost-cm", set())
    assert snap.target.port_number == 0
    ns.wait_event("ghost", reason="ServiceNotFound")

    ns.service("ghost")
    ns.make_slice("ghost", "ghost-1", [ep(pod_ip(61))])
    ns.wait_addresses("ghost-cm", {f"{pod_ip(61)}:50051"})
    until(
        lambda: condition(ns.get_target("ghost"), "ServiceFound").get("status") == "True",
        timeout_s=30,
        message="ServiceFound=True",
    )
    t = ns.wait_condition("ghost", "Ready", timeout_s=30, status="True")
    assert condition(t, "Ready")["reason"] == "Published"


def test_writes_only_on_change_and_coalesces_bursts(ns: Namespace, operator_factory: Any) -> None:
    # A fixed 3 s window, so that the burst below surely falls into few windows.
    op = operator_factory(env={"KUBERESOLVER_WRITE_BUDGET": "1/3000ms"})
    ns.service("burst")
    ns.make_slice("burst", "burst-1", [ep(pod_ip(71))])
    ns.create_target("burst", {"service": "burst"})
    first = ns.wait_addresses("burst", {f"{pod_ip(71)}:50051"})
    cm = ns.get_configmap("burst")
    assert cm is not None
    rv = cm.metadata.resource_version
    reconciles_before = reconciles(op)

    with ConfigMapWrites(ns.api, ns.name, "burst", rv) as writes:
        # Changes that do not change the endpoints: no write, same revision.
        core = client.CoreV1Api(ns.api)
        core.patch_namespaced_service("burst", ns.name, {"metadata": {"labels": {"touched": "1"}}})
        ns.make_slice("burst", "burst-1", [ep(pod_ip(71), ready=True)])
        ns.make_slice("burst", "burst-other-port", [ep(pod_ip(72))],
                   ports=[{"name": "metrics", "port": 9090, "protocol": "TCP"}])  # fmt: skip
        # A new generation whose output is the same: an empty serviceConfig merges to nothing.
        ns.patch_target("burst", {"serviceConfig": {}})
        generation = ns.get_target("burst")["metadata"]["generation"]
        assert generation == 2
        until(
            lambda: ns.get_target("burst")["status"]["observedGeneration"] == 2,
            timeout_s=30,
            message="the new generation observed",
        )
        assert reconciles(op) >= reconciles_before + 1
        cm = ns.get_configmap("burst")
        assert cm is not None
        assert cm.metadata.resource_version == rv
        assert writes.snapshot() == []

        # A burst of 10 endpoint changes in well under one window: coalesced.
        for n in range(10):
            ns.make_slice("burst", "burst-1",
                [ep(pod_ip(80 + i)) for i in range(n + 1)],
            )  # fmt: skip
        final = {f"{pod_ip(80 + i)}:50051" for i in range(10)}
        last = ns.wait_addresses("burst", final)

        def seen_final() -> list[dict[str, str]]:
            versions = writes.snapshot()
            assert versions, "no write seen yet"
            assert decode(versions[-1][ENDPOINTS_KEY]).revision == last.revision
            return versions

        versions = until(seen_final, timeout_s=30, message="the watch to see the last write")
    assert 1 <= len(versions) <= 4, f"{len(versions)} writes for a burst of 10 changes"
    # Every write changed the endpoints, so each one took the next revision.
    revisions = [decode(v[ENDPOINTS_KEY]).revision for v in versions]
    assert revisions == list(range(first.revision + 1, first.revision + 1 + len(versions)))


class TargetWrites:
    """The GrpcTarget's versions after ``resource_version``, from a watch (a context manager)."""

    def __init__(self, ns: Namespace, name: str, resource_version: str) -> None:
        self.statuses: list[dict[str, Any]] = []
        self._watch = watch.Watch()
        custom = client.CustomObjectsApi(ns.api)

        def run() -> None:
            with contextlib.suppress(Exception):  # a closed stream, after stop()
                for event in self._watch.stream(
                    custom.list_namespaced_custom_object, GROUP, VERSION, ns.name, PLURAL,
                    field_selector=f"metadata.name={name}", resource_version=resource_version,
                    timeout_seconds=120,
                ):  # fmt: skip
                    if event["type"] == "MODIFIED":
                        self.statuses.append(dict(event["object"].get("status") or {}))

        self._thread = threading.Thread(target=run, daemon=True)

    def __enter__(self) -> TargetWrites:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._watch.stop()


def test_status_counts_wait_for_the_interval_conditions_do_not(
    ns: Namespace, operator_factory: Any
) -> None:
    """Counts and revision are a summary, patched at most once per STATUS_INTERVAL_MS (a status
    patch costs the apiserver as much as the ConfigMap write); conditions are written at once."""
    operator_factory(env={"KUBERESOLVER_STATUS_INTERVAL_MS": "10000"})
    ns.service("summary")
    ns.make_slice("summary", "summary-1", [ep(pod_ip(90))])
    ns.create_target("summary", {"service": "summary"})
    ns.wait_addresses("summary", {f"{pod_ip(90)}:50051"})
    until(lambda: ns.get_target("summary").get("status", {}).get("readyEndpoints") == 1,
          timeout_s=30, message="the first status")  # fmt: skip
    version = ns.get_target("summary")["metadata"]["resourceVersion"]

    with TargetWrites(ns, "summary", version) as writes:
        for n in range(2, 6):  # four endpoint changes, each published before the next
            ns.make_slice("summary", "summary-1", [ep(pod_ip(90 + i)) for i in range(n)])
            ns.wait_addresses("summary", {f"{pod_ip(90 + i)}:50051" for i in range(n)})
        published = ns.get_configmap("summary")
        assert published is not None
        revision = decode(published.data[ENDPOINTS_KEY]).revision
        # At most the one trailing patch when the interval ends, never one per change.
        assert len(writes.statuses) <= 1, writes.statuses
        until(
            lambda: ns.get_target("summary")["status"].get("revision") == revision,
            timeout_s=30,
            message="the status catches up with the ConfigMap",
        )
        assert ns.get_target("summary")["status"]["readyEndpoints"] == 5

        # Losing every ready endpoint changes Ready: written at once, not after the interval.
        ns.make_slice("summary", "summary-1", [ep(pod_ip(90), ready=False)])
        until(
            lambda: condition(ns.get_target("summary"), "Ready").get("status") == "False",
            timeout_s=5,
            message="Ready=False well before the 10 s interval",
        )
