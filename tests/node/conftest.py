"""Tests on real nodes: kubelet and containerd run real Pods (testenv/node.py).

The session's :class:`~testenv.node_cluster.NodeCluster` has its own control
plane (with kube-scheduler and the Deployment and node controllers), apart from
the one the other folders share. ``one_node`` and ``two_nodes`` scale it to
exactly that many Ready nodes. At the end of the session every node is stopped,
and whatever one left behind (processes, mounts, network namespaces, links,
cgroups) fails the session's teardown.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client

from testenv.kube import admin_session, create_namespace
from testenv.node import Node
from testenv.node_cluster import NodeCluster
from tests import cluster


def pytest_configure(config: pytest.Config) -> None:
    cluster.configure(config)


@pytest.fixture(scope="session")
def node_cluster() -> Iterator[NodeCluster]:
    with NodeCluster() as nodes:
        yield nodes
    assert nodes.leftovers() == [], "the stopped nodes left these behind"


@pytest.fixture
def one_node(node_cluster: NodeCluster) -> list[Node]:
    return node_cluster.scale(1)


@pytest.fixture
def two_nodes(node_cluster: NodeCluster) -> list[Node]:
    return node_cluster.scale(2)


@pytest.fixture(scope="session")
def node_api(node_cluster: NodeCluster) -> Iterator[client.ApiClient]:
    """An admin client of the nodes' control plane, for the test to set up its world."""
    yield from admin_session(node_cluster.control_plane.admin_kubeconfig)


@pytest.fixture
def node_namespace(node_api: client.ApiClient) -> Iterator[str]:
    """A fresh namespace on the nodes' control plane; deleted after the test."""
    name = create_namespace(node_api, f"n-{uuid.uuid4().hex[:10]}")
    yield name
    client.CoreV1Api(node_api).delete_namespace(name, propagation_policy="Background")
