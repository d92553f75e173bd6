"""The direct-mode tests' world: the client's ServiceAccount, and pods that are real gRPC servers.

Backends are one real gRPC server listening on every pod IP of a test (in the
suite's network namespace); a call's peer address is the pod IP it reached.
"""

from __future__ import annotations

import itertools
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from kubernetes import client

from testenv.netns import pod_ip
from testenv.wait import until
from testenv.workloads import create_node, create_pod

ROOT = Path(__file__).resolve().parents[3]
RBAC = ROOT / "manifests/examples/direct-mode-rbac.yaml"
SA = "greeter-direct-client"
PORT = 50051
METHOD = "/demo.Greeter/SayHello"
_bases = itertools.count(1)


class Pods:
    """One gRPC server on many pod IPs; answers with the pod IP that was reached."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.api = api
        self.namespace = namespace
        self.base = 2000 + 300 * next(_bases)
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        handler = grpc.method_handlers_generic_handler(
            "demo.Greeter", {"SayHello": grpc.unary_unary_rpc_method_handler(self._hello)}
        )
        self.server.add_generic_rpc_handlers((handler,))
        self.started = False
        create_node(api, "node-direct")

    @staticmethod
    def _hello(request: bytes, context: grpc.ServicerContext) -> bytes:
        return context.peer().split(":")[1].encode()  # "ipv4:10.244.x.y:port"

    def ip(self, i: int) -> str:
        return pod_ip(self.base + i)

    def add(self, i: int) -> str:
        ip = self.ip(i)
        create_pod(self.api, self.namespace, f"greeter-{i}", ip, "node-direct", {"app": "greeter"})
        return ip

    def wait_ready(self, count: int) -> None:
        """Wait until the Service greeter has ``count`` ready endpoints."""
        until(
            lambda: ready_addresses(self.api, self.namespace)[1] == count,
            timeout_s=60,
            message=f"{count} ready",
        )

    def start(self, count: int) -> None:
        """Serve on the IPs of pods 0..count-1 (grpc binds ports before it starts)."""
        for i in range(count):
            if self.server.add_insecure_port(f"{self.ip(i)}:{PORT}") == 0:
                raise OSError(f"cannot listen on {self.ip(i)}:{PORT}")
        self.server.start()
        self.started = True

    def delete(self, i: int) -> None:
        client.CoreV1Api(self.api).delete_namespaced_pod(
            f"greeter-{i}", self.namespace, grace_period_seconds=0
        )

    def stop(self) -> None:
        if self.started:
            self.server.stop(None).wait()


def reached(channel: grpc.Channel, calls: int) -> set[str]:
    hello = channel.unary_unary(METHOD)
    return {hello(b"", timeout=5).decode() for _ in range(calls)}


def bound_token(api: client.ApiClient, namespace: str, secret: str | None = None) -> str:
    """A token for the client's ServiceAccount; bound to Secret ``secret`` when given."""
    spec: dict[str, Any] = {"audiences": [], "expirationSeconds": 3600}
    if secret is not None:
        uid = client.CoreV1Api(api).read_namespaced_secret(secret, namespace).metadata.uid
        spec["boundObjectRef"] = {"kind": "Secret", "apiVersion": "v1", "name": secret, "uid": uid}
    response = client.CoreV1Api(api).create_namespaced_service_account_token(
        SA, namespace, {"spec": spec}
    )
    return str(response.status.token)


def ready_addresses(api: client.ApiClient, namespace: str) -> tuple[int, int]:
    """How many slices the Service "greeter" has, and how many ready endpoints in them."""
    slices = (
        client.DiscoveryV1Api(api)
        .list_namespaced_endpoint_slice(
            namespace, label_selector="kubernetes.io/service-name=greeter"
        )
        .items
    )
    ready = sum(
        1
        for s in slices
        for e in s.endpoints or []
        if e.conditions is None or e.conditions.ready in (None, True)
    )
    return len(slices), ready
