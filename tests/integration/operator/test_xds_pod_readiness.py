"""The xDS feed serves a Pod turning Ready from the Pod itself, before its EndpointSlice says so
(KUBERESOLVER_XDS_POD_READINESS, on by default): a real operator under manifests/ RBAC
(with optional/xds-pod-readiness's), a real grpcio ``xds://`` client, real backends on pod IPs.

The slices here are written by the test under kube-controller-manager's own managed-by
label, for a Service without a selector, which that controller never syncs: so a slice
stays not ready for as long as the test wants, and only the Pod can have made an endpoint
ready. A slice of another controller stays the truth, whatever its Pods say.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from kuberesolver.operator.logic.pod_readiness import MANAGED_BY_CONTROLLER
from testenv.controlplane import free_port
from testenv.netns import pod_ip
from testenv.operator_process import OperatorProcess
from testenv.wait import until
from testenv.workloads import create_node, create_pod, set_pod_status
from tests.client._support import Backend
from tests.integration.operator.helpers import Namespace, ep
from tests.xds.conftest import AUTHORITY, Client, write_bootstrap

pytestmark = pytest.mark.integration

PORT = 50051
NODE = "node-xds-readiness"


@pytest.fixture
def backends() -> Iterator[dict[str, Backend]]:
    started = {name: Backend(pod_ip(n), name, port=PORT) for name, n in (
        ("steady", 201), ("kcm", 202), ("other", 203))}  # fmt: skip
    yield started
    for b in started.values():
        b.stop()


def pod_ep(namespace: str, pod: str, address: str, ready: bool) -> dict[str, Any]:
    out = ep(address, ready=ready, serving=ready, terminating=False)
    out["targetRef"] = {"kind": "Pod", "name": pod, "namespace": namespace}
    return out


def counts(c: Client, n: int) -> dict[str, int]:
    got = c.calls(n)
    assert not got["errors"], got
    return dict(got["counts"])


def slice_ready(api: client.ApiClient, namespace: str, name: str) -> bool:
    got = client.DiscoveryV1Api(api).read_namespaced_endpoint_slice(name, namespace)
    return bool(got.endpoints[0].conditions.ready)


def test_a_pod_turning_ready_is_served_before_its_slice_says_so(
    admin_api: client.ApiClient,
    namespace: str,
    ns: Namespace,
    operator_factory: Callable[..., OperatorProcess],
    backends: dict[str, Backend],
    tmp_path: Path,
) -> None:
    port = free_port()
    op = operator_factory(
        {"KUBERESOLVER_XDS_ADDRESS": f"127.0.0.1:{port}", "KUBERESOLVER_XDS_AUTHORITY": AUTHORITY}
    )
    create_node(admin_api, NODE)
    for name in ("kcm", "other"):
        create_pod(admin_api, namespace, name, backends[name].host, NODE, {}, ready=False)
    ns.service("svc")
    ns.make_slice("svc", "svc-steady", [ep(pod_ip(201), ready=True)])
    ns.make_slice("svc", "svc-kcm", [pod_ep(namespace, "kcm", pod_ip(202), ready=False)],
                  managed_by=MANAGED_BY_CONTROLLER)  # fmt: skip
    ns.make_slice("svc", "svc-other", [pod_ep(namespace, "other", pod_ip(203), ready=False)])
    ns.create_target("t", {"service": "svc", "port": "grpc"})
    ns.wait_published("t", {pod_ip(n) for n in (201, 202, 203)})
    boot = write_bootstrap(tmp_path / "boot.json", f"127.0.0.1:{port}")
    c = Client(boot, [f"xds://{AUTHORITY}/t.{namespace}"])
    try:
        until(lambda: counts(c, 10) == {"steady": 10}, timeout_s=60, message="steady over xDS")

        # Both Pods turn Ready, "other" first: the Pod watch delivers its event first, so
        # once "kcm" is served, "other" would have been too, had its slice been overridden.
        set_pod_status(admin_api, namespace, "other", ip=pod_ip(203), ready=True)
        set_pod_status(admin_api, namespace, "kcm", ip=pod_ip(202), ready=True)
        until(lambda: "kcm" in counts(c, 10), timeout_s=30, message="kcm's Pod served Ready")
        assert set(counts(c, 30)) == {"steady", "kcm"}
        # Only the Pod said it: the slice still says not ready, and the ConfigMap follows it.
        assert not slice_ready(admin_api, namespace, "svc-kcm")
        snapshot = ns.snapshot_of("t")
        assert snapshot is not None
        assert [e.address for e in snapshot.endpoints if e.ready] == [pod_ip(201)]

        # Not Ready again: withdrawn from the Pod alone too.
        set_pod_status(admin_api, namespace, "kcm", ip=pod_ip(202), ready=False)
        until(lambda: counts(c, 20) == {"steady": 20}, timeout_s=30, message="kcm withdrawn")
    finally:
        c.close()
    assert "watching pods failed" not in op.log_text()
