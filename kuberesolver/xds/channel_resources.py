"""The client's side of the xDS resources: its channel spec.

The builders live in :mod:`kuberesolver.xds.resources`, shared with the
operator-side xDS server. A :class:`ChannelSpec` names its resources after
everything that tells two channels apart, under the authority ``kuberesolver``
of the in-process server.
"""

from __future__ import annotations

from dataclasses import dataclass

from kuberesolver.core.policies import DEFAULT_MAX_ATTEMPTS
from kuberesolver.xds.resources import AUTHORITY

__all__ = ["ChannelSpec"]


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    """What one channel asks for: decides its resource name and its resources."""

    service: str
    namespace: str
    port: str
    lb_policy: str = ""
    """A policy of ``core.policies.LB_POLICIES``, or ``""``: the snapshot's (else round_robin)."""
    zone: str | None = None
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    source: str = ""
    """Tells apart the same target followed from different directories."""
    cluster_ip_fallback: bool = True
    """Serve the snapshot's ClusterIPs as the lowest priority (``build_endpoints``)."""
    method_timeouts: bool = False
    """Serve ``methodConfig`` timeouts as ``max_stream_duration``. Off for grpcio, which
    ends such calls 1-2 s early (grpc/grpc#34547, still in 1.85); the same for
    every channel of a process, so not part of :attr:`name`."""
    default_outlier_detection: bool = True
    """Eject failing endpoints with our defaults when the snapshot sets no outlier detection."""

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
        if not self.default_outlier_detection:
            parts.append("no-outlier-detection")
        if self.source:
            parts.append(self.source)
        return ".".join(_safe(p) for p in parts)


def _safe(part: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in part)
