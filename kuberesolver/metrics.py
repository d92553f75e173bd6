"""Optional Prometheus metrics, active only when ``prometheus_client`` is importable.

Install the ``metrics`` extra (``pip install kuberesolver[metrics]``) and
expose the default registry as usual; kuberesolver then records:

- ``kuberesolver_endpoints{target,state}``: endpoints in the last good
  snapshot, by state (``ready``, ``terminating``, ``not_ready``);
- ``kuberesolver_updates_total{target,result}``: snapshots ``applied`` or
  ``rejected`` (deleted, corrupt, unknown version, wrong target);
- ``kuberesolver_last_update_timestamp_seconds{target}``: when the last good
  snapshot was applied;
- ``kuberesolver_revision{target}``: its revision.

Picks per endpoint happen inside grpc's C core (the xDS balancer) and are not
visible to Python without a per-call cost. Count them at the servers, or via
grpc's own OpenTelemetry plugin (``grpcio-observability``), which labels
per-call metrics with the picked locality.
"""

from __future__ import annotations

import time
from typing import Any

from kuberesolver.snapshot import Snapshot

__all__ = ["ENABLED", "record_applied", "record_rejected"]

_prom: Any
try:
    import prometheus_client as _prom
except ImportError:  # pragma: no cover - the extra is not installed
    _prom = None

ENABLED: bool = _prom is not None

_metrics: dict[str, Any] = {}


def _get() -> dict[str, Any]:
    if not _metrics and _prom is not None:
        _metrics["endpoints"] = _prom.Gauge(
            "kuberesolver_endpoints",
            "Endpoints in the last good snapshot, by state.",
            ["target", "state"],
        )
        _metrics["updates"] = _prom.Counter(
            "kuberesolver_updates",
            "Snapshots applied or rejected.",
            ["target", "result"],
        )
        _metrics["last_update"] = _prom.Gauge(
            "kuberesolver_last_update_timestamp_seconds",
            "When the last good snapshot was applied (Unix time).",
            ["target"],
        )
        _metrics["revision"] = _prom.Gauge(
            "kuberesolver_revision", "Revision of the last good snapshot.", ["target"]
        )
    return _metrics


def record_applied(target: str, snapshot: Snapshot) -> None:
    """Record a good snapshot for ``target`` (``service.namespace:port``)."""
    if not ENABLED:
        return
    m = _get()
    states = {"ready": 0, "terminating": 0, "not_ready": 0}
    for ep in snapshot.endpoints:
        if ep.terminating:
            states["terminating"] += 1
        elif ep.ready:
            states["ready"] += 1
        else:
            states["not_ready"] += 1
    for state, count in states.items():
        m["endpoints"].labels(target, state).set(count)
    m["updates"].labels(target, "applied").inc()
    m["last_update"].labels(target).set(time.time())
    m["revision"].labels(target).set(snapshot.revision)


def record_rejected(target: str) -> None:
    """Record a snapshot that was refused (the last good one stays)."""
    if ENABLED:
        _get()["updates"].labels(target, "rejected").inc()
