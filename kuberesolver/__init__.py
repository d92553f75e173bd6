"""kuberesolver: per-pod gRPC load balancing for Python clients in Kubernetes.

``kuberesolver.insecure_channel("kubernetes:///greeter.backend:grpc")`` returns
a real ``grpc.Channel`` whose calls are balanced across the ready endpoints of
the mounted snapshot and follow its changes; ``kuberesolver.aio`` has the
asyncio twins. Only grpcio (and xds-protos, protobuf, watchfiles) is imported:
never the operator's dependencies.

Direct mode (no operator: the client watches the API, as Go's kuberesolver
does): ``kuberesolver.register_in_cluster()``, then the same channels.
"""

from kuberesolver._xds.orca import load_report
from kuberesolver.channel import insecure_channel, secure_channel
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
