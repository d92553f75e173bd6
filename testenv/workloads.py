"""Make real EndpointSlices without a kubelet: a Node, a Service, Pods with their status set.

The endpointslice controller of the test control plane then writes the slices,
exactly as in a cluster. Pod IPs come from ``testenv.netns.pod_ip()`` (10.244.0.0/16):
the apiserver refuses loopback addresses in EndpointSlices, and inside the test
process's private network namespace that range is local, so the gRPC servers a
test starts on those IPs are the real backends.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

from kubernetes import client

SLICE_SERVICE_LABEL = "kubernetes.io/service-name"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def create_node(api: client.ApiClient, name: str, zone: str | None = None) -> None:
    """A Node object (no kubelet behind it), optionally in a topology zone."""
    labels = {"kubernetes.io/hostname": name}
    if zone:
        labels["topology.kubernetes.io/zone"] = zone
    core = client.CoreV1Api(api)
    try:
        core.create_node(client.V1Node(metadata=client.V1ObjectMeta(name=name, labels=labels)))
    except client.ApiException as exc:
        if exc.status != 409:
            raise


def create_service(
    api: client.ApiClient,
    namespace: str,
    name: str,
    ports: Sequence[Mapping[str, Any]] = ({"name": "grpc", "port": 8080, "targetPort": 50051},),
    selector: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    headless: bool = True,
) -> None:
    """A Service selecting ``app=<name>`` by default. Headless: no ClusterIP is needed."""
    spec: dict[str, Any] = {
        "selector": dict(selector or {"app": name}),
        "ports": [{"protocol": "TCP", **p} for p in ports],
    }
    if headless:
        spec["clusterIP"] = "None"
    body = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "annotations": dict(annotations or {})},
        "spec": spec,
    }
    client.CoreV1Api(api).create_namespaced_service(namespace, body)  # type: ignore[arg-type]


def create_pod(
    api: client.ApiClient,
    namespace: str,
    name: str,
    ip: str,
    node: str,
    labels: Mapping[str, str],
    ready: bool = True,
    container_ports: Sequence[Mapping[str, Any]] = ({"name": "grpc", "containerPort": 50051},),
    *,
    spec: Mapping[str, Any] | None = None,
    container: Mapping[str, Any] | None = None,
    termination_grace_s: int | None = 0,
) -> None:
    """A Pod bound to ``node`` whose status says Running with ``ip`` and ``ready``.

    ``spec`` and ``container`` add fields to the Pod's and its container's spec
    (a securityContext); ``termination_grace_s=None`` leaves the field out.
    """
    if ipaddress.ip_address(ip).is_loopback:
        raise ValueError(
            f"pod IP {ip} is a loopback address, which EndpointSlices refuse: "
            "use testenv.netns.pod_ip(n)"
        )
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": dict(labels)},
        "spec": {
            **(spec or {}),
            "nodeName": node,
            "automountServiceAccountToken": False,
            "containers": [
                {
                    **(container or {}),
                    "name": "server",
                    "image": "example.invalid/server:1",
                    "ports": list(container_ports),
                }
            ],
        },
    }
    if termination_grace_s is not None:
        body["spec"]["terminationGracePeriodSeconds"] = termination_grace_s
    client.CoreV1Api(api).create_namespaced_pod(namespace, body)  # type: ignore[arg-type]
    set_pod_status(api, namespace, name, ip=ip, ready=ready)


def set_pod_status(
    api: client.ApiClient, namespace: str, name: str, ip: str | None = None, ready: bool = True
) -> None:
    """Do what a kubelet would: report the Pod Running, with its IP and readiness."""
    status_word = "True" if ready else "False"
    now = _now()
    status: dict[str, Any] = {
        "phase": "Running",
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
            {"type": "Initialized", "status": "True", "lastTransitionTime": now},
            {"type": "ContainersReady", "status": status_word, "lastTransitionTime": now},
            {"type": "Ready", "status": status_word, "lastTransitionTime": now},
        ],
    }
    if ip is not None:
        status.update(podIP=ip, podIPs=[{"ip": ip}], hostIP="127.0.0.1", startTime=now)
    client.CoreV1Api(api).patch_namespaced_pod_status(name, namespace, {"status": status})


def endpoint_slices(api: client.ApiClient, namespace: str, service: str) -> list[Any]:
    """The EndpointSlices the controller made for ``service``."""
    return list(
        client.DiscoveryV1Api(api)
        .list_namespaced_endpoint_slice(
            namespace, label_selector=f"{SLICE_SERVICE_LABEL}={service}"
        )
        .items
    )


def slice_addresses(api: client.ApiClient, namespace: str, service: str) -> dict[str, bool]:
    """Every address in the service's slices, mapped to its ``ready`` condition."""
    out: dict[str, bool] = {}
    for s in endpoint_slices(api, namespace, service):
        for ep in s.endpoints or []:
            ready = (
                ep.conditions.ready if ep.conditions and ep.conditions.ready is not None else True
            )
            for addr in ep.addresses:
                out[addr] = ready
    return out
