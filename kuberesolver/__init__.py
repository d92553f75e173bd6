"""kuberesolver: per-pod gRPC load balancing for Python clients in Kubernetes.

``kuberesolver.insecure_channel("kubernetes:///greeter.backend:grpc")`` returns
a :class:`Channel` (a real ``grpc.Channel``) whose calls are balanced across
the ready endpoints of the mounted snapshot and follow its changes;
``kuberesolver.aio`` has the asyncio twins.

Importing ``kuberesolver`` (or ``kuberesolver.snapshot``) loads nothing heavy:
grpc, the xDS protos and watchfiles are imported on first use of a name that
needs them, and the operator's dependencies never.

Direct mode (no operator: the client watches the API, as Go's kuberesolver
does): ``kuberesolver.register_in_cluster()``, then the same channels. The
Kubernetes client library (extra ``[direct]``) loads only when a client is made.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from kuberesolver._version import __version__ as __version__

if TYPE_CHECKING:
    from kuberesolver._xds.orca import load_report
    from kuberesolver.channel import Channel, insecure_channel, secure_channel
    from kuberesolver.direct import (
        Builder,
        K8sClient,
        new_in_cluster_k8s_client,
        new_insecure_k8s_client,
        register,
        register_in_cluster,
        register_in_cluster_with_schema,
    )
    from kuberesolver.snapshot import Endpoint, Snapshot, SnapshotError, TargetRef
    from kuberesolver.target import ParsedTarget, parse_target, register_scheme
    from kuberesolver.watch import SnapshotNotFound

__all__ = [
    "Builder",
    "Channel",
    "Endpoint",
    "K8sClient",
    "ParsedTarget",
    "Snapshot",
    "SnapshotError",
    "SnapshotNotFound",
    "TargetRef",
    "insecure_channel",
    "load_report",
    "new_in_cluster_k8s_client",
    "new_insecure_k8s_client",
    "parse_target",
    "register",
    "register_in_cluster",
    "register_in_cluster_with_schema",
    "register_scheme",
    "secure_channel",
]

_HOMES: dict[str, str] = {
    "Builder": "kuberesolver.direct.builder",
    "K8sClient": "kuberesolver.direct.client",
    "new_in_cluster_k8s_client": "kuberesolver.direct.client",
    "new_insecure_k8s_client": "kuberesolver.direct.client",
    "register": "kuberesolver.direct.builder",
    "register_in_cluster": "kuberesolver.direct.builder",
    "register_in_cluster_with_schema": "kuberesolver.direct.builder",
    "Channel": "kuberesolver.channel",
    "Endpoint": "kuberesolver.snapshot",
    "ParsedTarget": "kuberesolver.target",
    "Snapshot": "kuberesolver.snapshot",
    "SnapshotError": "kuberesolver.snapshot",
    "SnapshotNotFound": "kuberesolver.watch",
    "TargetRef": "kuberesolver.snapshot",
    "insecure_channel": "kuberesolver.channel",
    "load_report": "kuberesolver._xds.orca",
    "parse_target": "kuberesolver.target",
    "register_scheme": "kuberesolver.target",
    "secure_channel": "kuberesolver.channel",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'kuberesolver' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
