"""A control plane with real nodes: ``scale(n)`` gives exactly n Ready kubelets.

    with NodeCluster() as cluster:
        workers = cluster.scale(2)      # worker-1 and worker-2, Ready
        ...
        assert cluster.leftovers() == []   # after stop: nothing of any node remains

The control plane is ``ControlPlane(real_nodes=True)``: kube-scheduler places
Pods, and the Deployment, ReplicaSet and node-lifecycle controllers run.
Nodes are numbered from 1; each has its own containerd, kubelet root, pod /24
and bridge (testenv/node.py).
"""

from __future__ import annotations

from pathlib import Path

from testenv.controlplane import ControlPlane, Started
from testenv.node import Node

__all__ = ["NodeCluster"]


class NodeCluster(Started):
    """``start()`` starts the control plane only; nodes come with :meth:`scale` or :meth:`add`."""

    def __init__(self, workdir: Path | None = None) -> None:
        self.control_plane = ControlPlane(workdir, real_nodes=True)
        self.nodes: dict[int, Node] = {}
        self.stopped: list[Node] = []

    def start(self, timeout_s: float = 60.0) -> None:
        self.control_plane.start(timeout_s)

    def add(self, index: int) -> Node:
        """Start node ``index`` (if not running) and return it once Ready."""
        if index not in self.nodes:
            node = Node(self.control_plane, index)
            try:
                node.start()
            except BaseException:
                self.stopped.append(node)  # start() stopped it: its leftovers still count
                raise
            self.nodes[index] = node
        return self.nodes[index]

    def remove(self, index: int) -> None:
        """Stop node ``index``: drained, its processes ended, its Node object deleted."""
        node = self.nodes.pop(index, None)
        if node is not None:
            node.stop()
            self.stopped.append(node)

    def scale(self, count: int) -> list[Node]:
        """Exactly nodes 1..count run (others stopped); returns them in order."""
        for index in sorted((i for i in self.nodes if i > count), reverse=True):
            self.remove(index)
        return [self.add(i) for i in range(1, count + 1)]

    def stop(self) -> None:
        for index in sorted(self.nodes, reverse=True):
            self.remove(index)
        self.control_plane.stop()

    def leftovers(self) -> list[str]:
        """What any stopped node left behind (see :meth:`Node.leftovers`); empty when clean."""
        return [f"{node.name}: {item}" for node in self.stopped for item in node.leftovers()]
