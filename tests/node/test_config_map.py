"""kubelet's real ConfigMap mount: an edit reaches the running container, after its lag."""

from __future__ import annotations

import time

import pytest
from kubernetes import client

from testenv.node import Node
from testenv.node_config import SYNC_FREQUENCY_S
from testenv.wait import until
from tests.node.workloads import http_get, pod_with_config_map

# kubelet re-reads a Pod's ConfigMaps on each pod sync: every syncFrequency (plus
# jitter) once the Pod has settled. Well above that:
REFRESH_BOUND_S = 3 * SYNC_FREQUENCY_S


@pytest.mark.timeout(SYNC_FREQUENCY_S + 2 * REFRESH_BOUND_S)  # the edits' bounds, and the Pod's
def test_a_config_map_edit_reaches_the_file_in_the_running_container(
    one_node: list[Node], node_api: client.ApiClient, node_namespace: str
) -> None:
    core = client.CoreV1Api(node_api)
    image = one_node[0].images.testserver.name  # type: ignore[union-attr]
    core.create_namespaced_config_map(
        node_namespace, {"metadata": {"name": "settings"}, "data": {"greeting": "v1"}}
    )
    core.create_namespaced_pod(node_namespace, pod_with_config_map("reader", image, "settings"))

    def ready_ip() -> str | None:
        pod = core.read_namespaced_pod("reader", node_namespace)
        ready = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
        return pod.status.pod_ip if ready else None

    ip = until(ready_ip, timeout_s=120, interval_s=0.5, message="the reader Pod to be Ready")
    ready_at = time.monotonic()
    assert http_get(ip, "/files/greeting") == (200, "v1")
    # kubelet's atomic layout: the key is a link into the ..data generation.
    assert http_get(ip, "/files/..data/greeting") == (200, "v1")

    # In its first seconds a Pod is synced often (container events, probe
    # results), so an edit then shows within a second. Edit until one is
    # delivered by a periodic sync, past the first period: that lag is the
    # one clients of a settled Pod live with.
    lags: list[float] = []
    while time.monotonic() - ready_at <= SYNC_FREQUENCY_S:
        lags.append(edit_and_wait(core, node_namespace, ip, f"v{len(lags) + 2}"))
    print("ConfigMap edit -> file in the container:", ", ".join(f"{s:.1f} s" for s in lags))


def edit_and_wait(core: client.CoreV1Api, namespace: str, ip: str, value: str) -> float:
    """Edit the ConfigMap, wait until the container serves the new value; seconds taken."""
    core.patch_namespaced_config_map("settings", namespace, {"data": {"greeting": value}})
    edited = time.monotonic()
    until(
        lambda: http_get(ip, "/files/greeting") == (200, value),
        timeout_s=REFRESH_BOUND_S,
        interval_s=0.5,
        message=f"kubelet to write greeting={value} into the container",
    )
    return time.monotonic() - edited
