"""A private network namespace for the test process, where pod IPs are local addresses.

The apiserver refuses loopback addresses (127.0.0.0/8, ::1) in EndpointSlices,
so test Pods get IPs from ``POD_CIDR`` instead. Inside a network namespace of
our own, that whole range is routed to ``lo`` (like 127.0.0.0/8), so a gRPC
server can listen on any pod IP and nothing can leave the machine: the
namespace has no other interface.

The Service range ``SERVICE_CIDR`` is routed to ``lo`` too, with a source
address inside the pod range (so kube-proxy does not masquerade): kube-proxy
(testenv/kube_proxy.py) then turns a ClusterIP into a pod IP, as on a node.
"""

from __future__ import annotations

import ctypes
import ipaddress
import os
import subprocess

POD_CIDR = "10.244.0.0/16"
SERVICE_CIDR = "10.96.0.0/16"
NODE_IP = "10.244.255.254"
"""The address of the one Node: the source of connections to ClusterIPs."""
_CLONE_NEWNET = 0x40000000
_MARKER = "KUBERESOLVER_TESTENV_NETNS"


def pod_ip(index: int) -> str:
    """The ``index``-th pod IP (1-based).

    >>> pod_ip(1), pod_ip(256)
    ('10.244.0.1', '10.244.1.0')
    """
    return str(ipaddress.ip_network(POD_CIDR)[index])


def in_private_network() -> bool:
    """Whether this process or an ancestor already entered one (children inherit it)."""
    return bool(os.environ.get(_MARKER))


def enter_private_network() -> None:
    """Move this process (and its future children) into a new network namespace.

    Call it before any thread starts: a namespace switch applies to the calling
    thread and what it spawns. Idempotent. Needs CAP_SYS_ADMIN (root here).
    """
    if in_private_network():
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(_CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare(CLONE_NEWNET) failed: {os.strerror(err)} (run as root)")
    for cmd in (
        ["ip", "link", "set", "lo", "up"],
        ["ip", "route", "add", "local", POD_CIDR, "dev", "lo"],
        ["ip", "route", "add", SERVICE_CIDR, "dev", "lo", "src", NODE_IP],
    ):
        subprocess.run(cmd, check=True, capture_output=True)
    os.environ[_MARKER] = str(os.getpid())
