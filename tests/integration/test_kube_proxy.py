"""A real kube-proxy in the suite's network namespace: a ClusterIP reaches the ready pod IPs
and follows EndpointSlice changes."""

from __future__ import annotations

import collections
from collections.abc import Iterator

import grpc
import pytest
from kubernetes import client

from demo.backends import METHOD, Backend
from testenv.kube_proxy import NODE_NAME, KubeProxy
from testenv.netns import SERVICE_CIDR, pod_ip
from testenv.wait import until
from testenv.workloads import create_pod, create_service

pytestmark = pytest.mark.integration

PORT = 50051


def one_connection(address: str) -> str:
    """A call on a fresh connection (kube-proxy picks a pod per connection): who answered."""
    channel = grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
    try:
        return channel.unary_unary(METHOD)(b"", timeout=5).decode()
    finally:
        channel.close()


def answered(address: str, connections: int) -> collections.Counter[str]:
    out: collections.Counter[str] = collections.Counter()
    for _ in range(connections):
        try:
            out[one_connection(address)] += 1
        except grpc.RpcError as exc:
            out[exc.code().name] += 1
    return out


@pytest.fixture
def servers() -> Iterator[dict[str, Backend]]:
    started: dict[str, Backend] = {}
    yield started
    for b in started.values():
        b.stop()


def test_cluster_ip_reaches_pod_ips_and_follows_a_slice_change(
    kube_proxy: KubeProxy,
    admin_api: client.ApiClient,
    namespace: str,
    servers: dict[str, Backend],
) -> None:
    create_service(admin_api, namespace, "greeter", headless=False)
    service = client.CoreV1Api(admin_api).read_namespaced_service("greeter", namespace)
    cluster_ip = service.spec.cluster_ip
    assert cluster_ip.startswith(SERVICE_CIDR.split(".0.0/")[0] + ".")
    address = f"{cluster_ip}:8080"

    def add(i: int) -> None:
        name, ip = f"greeter-{i}", pod_ip(60 + i)
        servers[name] = Backend(name, ip, PORT)
        create_pod(admin_api, namespace, name, ip, NODE_NAME, {"app": "greeter"})

    add(1)
    add(2)
    until(
        message="the ClusterIP to reach both pods",
        fn=lambda: set(answered(address, 10)) == {"greeter-1", "greeter-2"},
        timeout_s=30,
    )

    # A slice change: greeter-1 leaves (its server still runs, so a stale rule would show),
    # greeter-3 joins.
    client.CoreV1Api(admin_api).delete_namespaced_pod(
        "greeter-1", namespace, grace_period_seconds=0
    )
    add(3)
    until(
        message="the ClusterIP to follow the slice change",
        fn=lambda: set(answered(address, 10)) == {"greeter-2", "greeter-3"},
        timeout_s=30,
    )
    assert set(answered(address, 20)) == {"greeter-2", "greeter-3"}
    assert servers["greeter-1"].calls >= 1  # it was reached before the change
