"""Prometheus metrics of the xDS server, in a registry the host chooses.

- ``kuberesolver_xds_streams``: open ADS streams.
- ``kuberesolver_xds_responses_total{type}``: responses sent.
- ``kuberesolver_xds_acks_total{type}``: responses a client accepted.
- ``kuberesolver_xds_nacks_total{type}``: responses a client refused (the
  stream keeps the last version it accepted; see the server's log).

``type`` is the resource type's short name (``Listener``, ``Cluster``,
``ClusterLoadAssignment``).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["XdsMetrics", "short_type"]


def short_type(type_url: str) -> str:
    """``type.googleapis.com/envoy.config.listener.v3.Listener`` -> ``Listener``."""
    return type_url.rsplit(".", 1)[-1]


class XdsMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.streams = Gauge("kuberesolver_xds_streams", "Open ADS streams", registry=self.registry)
        self.responses = Counter(
            "kuberesolver_xds_responses", "ADS responses sent", ["type"], registry=self.registry
        )
        self.acks = Counter(
            "kuberesolver_xds_acks", "ADS responses accepted", ["type"], registry=self.registry
        )
        self.nacks = Counter(
            "kuberesolver_xds_nacks",
            "ADS responses refused by a client (it keeps its last good version)",
            ["type"],
            registry=self.registry,
        )

    def value(self, name: str, **labels: str) -> float:
        """A sample's value, 0 if absent: ``value("kuberesolver_xds_nacks_total", type=...)``."""
        found = self.registry.get_sample_value(name, labels)
        return 0.0 if found is None else float(found)
