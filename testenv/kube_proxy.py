"""A real kube-proxy (nftables mode) in the tests' network namespace: ClusterIPs that work.

Built from the same Kubernetes module as the apiserver (testenv/build.sh). It
programs the namespace's own nftables, so a connection to a Service's
ClusterIP (routed to ``lo`` by testenv/netns.py) reaches one of its ready pod
IPs, and follows EndpointSlice changes within tens of milliseconds.

    with KubeProxy(cp) as proxy:   # after enter_private_network()
        ...

It needs a Node with an InternalIP (else it waits 30 s for one) and a client
certificate for ``system:kube-proxy``, the user the default RBAC already binds
to ``system:node-proxier``. Beside a real kubelet (testenv/node.py), whose Node
reports its own address: ``KubeProxy(cp, node=node.name, address=None)``; Pods
then reach ClusterIPs over the node's bridge, and the apiserver reaches them too
(it calls webhooks through their Service's ClusterIP).

One per network namespace: every kube-proxy owns the nftables table
``kube-proxy`` and clears the iptables and nftables rules of other modes as it
starts, so a second one in the same test process is refused with a clear error.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from kubernetes import client

from testenv.build import ensure_binaries
from testenv.controlplane import (
    ControlPlane,
    ControlPlaneError,
    Started,
    _http_get,
    _Process,
    free_port,
)
from testenv.kube import api_client
from testenv.netns import NODE_IP, POD_CIDR, in_private_network

__all__ = ["NODE_NAME", "KubeProxy", "create_node_with_address"]

NODE_NAME = "node-1"
_running: set[int] = set()
"""The KubeProxy objects running in this process (so in its network namespace)."""


def create_node_with_address(api: client.ApiClient, name: str, address: str) -> None:
    """A Node (no kubelet behind it) whose status names ``address`` as its InternalIP."""
    core = client.CoreV1Api(api)
    try:
        core.create_node(
            client.V1Node(
                metadata=client.V1ObjectMeta(name=name, labels={"kubernetes.io/hostname": name})
            )
        )
    except client.ApiException as exc:
        if exc.status != 409:
            raise
    core.patch_node_status(
        name,
        {
            "status": {
                "addresses": [
                    {"type": "InternalIP", "address": address},
                    {"type": "Hostname", "address": name},
                ]
            }
        },
    )


class KubeProxy(Started):
    """One kube-proxy process for ``node``; ``start()``/``stop()`` idempotent, a context manager."""

    def __init__(
        self, control_plane: ControlPlane, node: str = NODE_NAME, address: str | None = NODE_IP
    ) -> None:
        """``address``: the InternalIP to give Node ``node`` (created if missing); ``None``
        for the Node of a real kubelet, which reports its own."""
        self.control_plane = control_plane
        self.node = node
        self.address = address
        self.healthz_port = 0
        self.process: _Process | None = None

    def start(self, timeout_s: float = 60.0) -> None:
        if self.process is not None:
            return
        if not in_private_network():
            raise ControlPlaneError(
                "kube-proxy rewrites the network namespace's nftables: start it only after "
                "testenv.netns.enter_private_network()"
            )
        if _running:
            raise ControlPlaneError(
                "a kube-proxy already programs this network namespace (nftables table "
                "kube-proxy, and each one clears the other's rules as it starts): one per "
                "namespace, so one control plane with ClusterIPs per test process"
            )
        if shutil.which("nft") is None:
            raise ControlPlaneError("kube-proxy's nftables mode needs `nft` (apt-get nftables)")
        binary = ensure_binaries() / "kube-proxy"
        if not binary.is_file():
            raise ControlPlaneError(f"{binary} is missing: run testenv/build.sh")
        cp = self.control_plane
        if self.address is not None:
            admin = api_client(cp.admin_kubeconfig)
            try:
                create_node_with_address(admin, self.node, self.address)
            finally:
                admin.close()  # type: ignore[no-untyped-call]
        kubeconfig = cp.cert_kubeconfig("kube-proxy", "kube-proxy", "system:kube-proxy")
        self.healthz_port = free_port()
        logs = cp.workdir / "logs"
        logs.mkdir(exist_ok=True)
        self.process = _Process(
            "kube-proxy",
            [
                str(binary),
                f"--kubeconfig={kubeconfig}",
                f"--hostname-override={self.node}",
                f"--cluster-cidr={POD_CIDR}",
                "--proxy-mode=nftables",
                "--conntrack-max-per-core=0",
                "--conntrack-tcp-timeout-established=0",
                "--conntrack-tcp-timeout-close-wait=0",
                "--iptables-min-sync-period=0s",
                "--nodeport-addresses=primary",
                f"--healthz-bind-address=127.0.0.1:{self.healthz_port}",
                "--metrics-bind-address=",
                "--v=1",
            ],
            logs / "kube-proxy.log",
        )
        _running.add(id(self))
        try:
            self._wait_healthy(timeout_s)
        except BaseException:
            self.stop()
            raise

    @property
    def log_path(self) -> Path | None:
        return self.process.log_path if self.process else None

    def log_tail(self, lines: int = 40) -> str:
        return self.process.log_tail(lines) if self.process else ""

    def _wait_healthy(self, timeout_s: float) -> None:
        assert self.process is not None
        url = f"http://127.0.0.1:{self.healthz_port}/healthz"
        self.process.wait_until(lambda: bool(_http_get(url)), "kube-proxy /healthz", timeout_s)

    def stop(self) -> None:
        """Stop kube-proxy (its rules stay in the namespace, which dies with the tests)."""
        if self.process is not None:
            self.process.stop()
            self.process = None
            _running.discard(id(self))
