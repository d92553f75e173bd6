"""kuberesolver: per-pod gRPC load balancing for Python clients in Kubernetes.

``kuberesolver.insecure_channel("kubernetes:///greeter.backend:grpc")`` returns
a :class:`Channel` (a real ``grpc.Channel``) whose calls are balanced across
the ready endpoints of the mounted snapshot and follow its changes;
``kuberesolver.aio`` has the asyncio twins.

Importing ``kuberesolver`` (or ``kuberesolver.core.snapshot``) loads nothing heavy:
grpc, the xDS protos and watchfiles are imported on first use of a name that
needs them, and the operator's dependencies never. They come with the
``client`` extra (``pip install 'kuberesolver[client]'``); without it, such a
name raises ``ModuleNotFoundError`` naming that install.

Direct mode (no operator: the client watches the API, as Go's kuberesolver
does): ``kuberesolver.register_in_cluster()``, then the same channels. The
Kubernetes client library (extra ``[direct]``) loads only when a client is made.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

from kuberesolver._version import __version__ as __version__

if TYPE_CHECKING:
    from kuberesolver.client.calls import ForkedChannelError
    from kuberesolver.client.channel import Channel, insecure_channel, secure_channel
    from kuberesolver.client.sources.file import SnapshotNotFound
    from kuberesolver.client.target import ParsedTarget, parse_target, register_scheme
    from kuberesolver.core.snapshot import Endpoint, Snapshot, SnapshotError, TargetRef
    from kuberesolver.direct import (
        Builder,
        K8sClient,
        new_in_cluster_k8s_client,
        new_insecure_k8s_client,
        new_k8s_client,
        new_kubeconfig_k8s_client,
        register,
        register_in_cluster,
        register_in_cluster_with_schema,
    )
    from kuberesolver.xds.orca import load_report

__all__ = [
    "Builder",
    "Channel",
    "Endpoint",
    "ForkedChannelError",
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
    "new_k8s_client",
    "new_kubeconfig_k8s_client",
    "parse_target",
    "register",
    "register_in_cluster",
    "register_in_cluster_with_schema",
    "register_scheme",
    "secure_channel",
]

_HOMES: dict[str, str] = {
    "Builder": "kuberesolver.client.sources.api.builder",
    "K8sClient": "kuberesolver.kube.client",
    "new_in_cluster_k8s_client": "kuberesolver.kube.client",
    "new_insecure_k8s_client": "kuberesolver.kube.client",
    "new_k8s_client": "kuberesolver.kube.client",
    "new_kubeconfig_k8s_client": "kuberesolver.kube.client",
    "register": "kuberesolver.client.sources.api.builder",
    "register_in_cluster": "kuberesolver.client.sources.api.builder",
    "register_in_cluster_with_schema": "kuberesolver.client.sources.api.builder",
    "Channel": "kuberesolver.client.channel",
    "Endpoint": "kuberesolver.core.snapshot",
    "ForkedChannelError": "kuberesolver.client.calls",
    "ParsedTarget": "kuberesolver.client.target",
    "Snapshot": "kuberesolver.core.snapshot",
    "SnapshotError": "kuberesolver.core.snapshot",
    "SnapshotNotFound": "kuberesolver.client.sources.file",
    "TargetRef": "kuberesolver.core.snapshot",
    "insecure_channel": "kuberesolver.client.channel",
    "load_report": "kuberesolver.xds.orca",
    "parse_target": "kuberesolver.client.target",
    "register_scheme": "kuberesolver.client.target",
    "secure_channel": "kuberesolver.client.channel",
}


def __getattr__(name: str) -> Any:
    from kuberesolver.core.extras import client_extra

    home = _HOMES.get(name)
    if home is not None:
        with client_extra():
            value = getattr(importlib.import_module(home), name)
    elif not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        # ``import kuberesolver`` then ``kuberesolver.aio.insecure_channel(...)``, as with
        # any package whose submodules are loaded on first use.
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module 'kuberesolver' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
