"""A Deployment on two real nodes: the scheduler spreads it, kubelet probes it Ready."""

from __future__ import annotations

import ipaddress

from kubernetes import client

from testenv.node import Node
from testenv.wait import until
from tests.node.workloads import deployment, http_get


def test_a_deployment_of_two_lands_on_both_nodes_and_becomes_ready(
    two_nodes: list[Node], node_api: client.ApiClient, node_namespace: str
) -> None:
    apps, core = client.AppsV1Api(node_api), client.CoreV1Api(node_api)
    image = two_nodes[0].images.testserver.name  # type: ignore[union-attr]
    apps.create_namespaced_deployment(node_namespace, deployment("server", image, replicas=2))

    until(
        lambda: (
            apps.read_namespaced_deployment("server", node_namespace).status.ready_replicas == 2
        ),
        timeout_s=180,
        interval_s=0.5,
        message="both replicas of the Deployment to be Ready",
    )

    pods = core.list_namespaced_pod(node_namespace, label_selector="app=server").items
    nodes = {n.name: n for n in two_nodes}
    assert sorted(p.spec.node_name for p in pods) == sorted(nodes)
    for pod in pods:
        subnet = ipaddress.ip_network(nodes[pod.spec.node_name].layout.subnet)
        assert ipaddress.ip_address(pod.status.pod_ip) in subnet
        # Real traffic from the test to the container, over the node's bridge.
        assert http_get(pod.status.pod_ip, "/name") == (200, pod.metadata.name)
        ready = next(c for c in pod.status.conditions if c.type == "Ready")
        started = (ready.last_transition_time - pod.metadata.creation_timestamp).total_seconds()
        print(f"pod {pod.metadata.name} on {pod.spec.node_name}: created -> Ready {started:.0f} s")
