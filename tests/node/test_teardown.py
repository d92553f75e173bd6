"""A stopped node leaves nothing behind: no process, mount, network namespace, link or cgroup."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes import client

from testenv.node_cluster import NodeCluster
from testenv.node_config import KUBELET_SYSCTLS
from testenv.wait import until
from tests.node.workloads import http_get, pod_with_config_map

SPARE_NODE = 9  # apart from the nodes scale() numbers 1, 2, ...


def _sysctls() -> dict[str, str]:
    return {k: Path("/proc/sys", k.replace(".", "/")).read_text() for k in KUBELET_SYSCTLS}


def test_a_stopped_node_leaves_nothing_behind(
    node_cluster: NodeCluster, node_api: client.ApiClient, node_namespace: str
) -> None:
    machine_sysctls = _sysctls()
    node = node_cluster.add(SPARE_NODE)
    core = client.CoreV1Api(node_api)
    core.create_namespaced_config_map(
        node_namespace, {"metadata": {"name": "c"}, "data": {"k": "v"}}
    )
    # The default ServiceAccount token is a projected volume: a tmpfs kubelet mounts.
    pod = pod_with_config_map("busy", node.images.testserver.name, "c", node=node.name)  # type: ignore[union-attr]
    core.create_namespaced_pod(node_namespace, pod)

    def ready_ip() -> str | None:
        p = core.read_namespaced_pod("busy", node_namespace)
        ready = any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
        return p.status.pod_ip if ready else None

    ip = until(ready_ip, timeout_s=120, interval_s=0.5, message="the Pod on the spare node")
    assert http_get(ip, "/files/k") == (200, "v")

    # While it runs, the checks below have something to find: containerd, kubelet,
    # a shim, pause and the server; root filesystems, the Pod's network namespace,
    # its shm and the token's tmpfs, all in the node's own mount namespace.
    footprint = node.footprint()
    assert footprint["processes"] >= 5, footprint
    assert footprint["mounts"] >= 4, footprint
    assert node.leftovers() != []
    assert _sysctls() == machine_sysctls, "kubelet changed the machine's kernel settings"

    node_cluster.remove(SPARE_NODE)

    assert node.leftovers() == []
    assert _sysctls() == machine_sysctls
    # The Pod's address went with the node's bridge: no route to it is left.
    with pytest.raises(OSError, match=r"[Nn]etwork is unreachable"):
        http_get(ip, "/healthz", timeout_s=1)
