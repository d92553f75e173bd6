"""kuberesolver: per-pod gRPC load balancing for Python clients in Kubernetes.

``kuberesolver.insecure_channel("kubernetes:///greeter.backend:grpc")`` returns
a real ``grpc.Channel`` whose calls are balanced across the ready endpoints of
the mounted snapshot and follow its changes; ``kuberesolver.aio`` has the
asyncio twins. Only grpcio (and xds-protos, protobuf, watchfiles) is imported:
never the operator's dependencies.
"""

from kuberesolver._version import __version__ as __version__
from kuberesolver._xds.orca import load_report
from kuberesolver.channel import insecure_channel, secure_channel
from kuberesolver.snapshot import Endpoint, Snapshot, SnapshotError, TargetRef
from kuberesolver.target import ParsedTarget, parse_target, register_scheme
from kuberesolver.watch import SnapshotNotFound

__all__ = [
    "Endpoint",
    "ParsedTarget",
    "Snapshot",
    "SnapshotError",
    "SnapshotNotFound",
    "TargetRef",
    "insecure_channel",
    "load_report",
    "parse_target",
    "register_scheme",
    "secure_channel",
]
