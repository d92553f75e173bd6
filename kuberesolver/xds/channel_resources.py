"""The client's side of the xDS resources: its channel spec, and the shared builders.

The builders live in :mod:`kuberesolver.xds.resources`, shared with the
operator-side xDS server; they are re-exported here for the client's modules.
A :class:`ChannelSpec` names its resources after everything that tells two
channels apart, under the authority ``kuberesolver`` of the in-process server.
"""

from __future__ import annotations

from dataclasses import dataclass

from kuberesolver.core.policies import (
    DEFAULT_MAX_ATTEMPTS,
    LB_POLICIES,
    PICK_FIRST,
    ROUND_ROBIN,
    WEIGHTED_ROUND_ROBIN,
    normalize_policy,
    policy_from_service_config,
)
from kuberesolver.xds.resources import (
    AUTHORITY,
    CLUSTER_IP_LOCALITY,
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    build_cluster,
    build_endpoints,
    build_listener,
    build_outlier_detection,
    build_resources,
    build_routes,
    cluster_name,
    effective_policy,
    endpoints_name,
    health_of,
    listener_name,
    unapplied_service_config_keys,
)

__all__ = [
    "AUTHORITY",
    "CLUSTER_IP_LOCALITY",
    "CLUSTER_TYPE",
    "ENDPOINT_TYPE",
    "LB_POLICIES",
    "LISTENER_TYPE",
    "PICK_FIRST",
    "ROUND_ROBIN",
    "WEIGHTED_ROUND_ROBIN",
    "ChannelSpec",
    "build_cluster",
    "build_endpoints",
    "build_listener",
    "build_outlier_detection",
    "build_resources",
    "build_routes",
    "cluster_name",
    "effective_policy",
    "endpoints_name",
    "health_of",
    "listener_name",
    "normalize_policy",
    "policy_from_service_config",
    "unapplied_service_config_keys",
]


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    """What one channel asks for: decides its resource name and its resources."""

    service: str
    namespace: str
    port: str
    lb_policy: str = ""
    """A policy of :data:`LB_POLICIES`, or ``""``: the snapshot's (else round_robin)."""
    zone: str | None = None
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    source: str = ""
    """Tells apart the same target followed from different directories."""
    cluster_ip_fallback: bool = True
    """Serve the snapshot's ClusterIPs as the lowest priority (see :func:`build_endpoints`)."""
    method_timeouts: bool = False
    """Serve ``methodConfig`` timeouts as ``max_stream_duration``. Off for grpcio, which
    ends such calls 1-2 s early (grpc/grpc#34547, still in 1.85); the same for
    every channel of a process, so not part of :attr:`name`."""

    @property
    def authority(self) -> str:
        """The in-process server's federation authority."""
        return AUTHORITY

    @property
    def zone_localities(self) -> bool:
        """Off: the client knows its own zone, and prefers it instead."""
        return False

    @property
    def name(self) -> str:
        """The resource name: readable, stable, one per distinct spec."""
        parts = [f"{self.service}.{self.namespace}", self.port or "-", self.lb_policy or "auto"]
        if self.zone:
            parts.append(f"zone-{self.zone}")
        if self.max_attempts != DEFAULT_MAX_ATTEMPTS:
            parts.append(f"attempts-{self.max_attempts}")
        if not self.cluster_ip_fallback:
            parts.append("no-fallback")
        if self.source:
            parts.append(self.source)
        return ".".join(_safe(p) for p in parts)


def _safe(part: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in part)
