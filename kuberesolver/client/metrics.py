"""Optional Prometheus metrics, active only when ``prometheus_client`` is importable.

Install the ``metrics`` extra (``pip install kuberesolver[metrics]``) and
expose the default registry as usual; kuberesolver then records:

- ``kuberesolver_endpoints{target,state}``: endpoints in the last good
  snapshot, by state (``ready``, ``terminating``, ``not_ready``);
- ``kuberesolver_updates_total{target,result}``: snapshots ``applied``,
  ``rejected`` (deleted, corrupt, unknown version, wrong target, or an error
  while reading it) or ``refused_by_grpc`` (grpc's xDS client NACKed it);
- ``kuberesolver_last_update_timestamp_seconds{target}``: when the last good
  snapshot was applied;
- ``kuberesolver_revision{target}``: its revision.

With ``pick_metrics=True`` (or ``KUBERESOLVER_PICK_METRICS=1``), also:

- ``kuberesolver_picks_total{target,endpoint,pod}``: completed calls (OK or
  not, each retry attempt apart) that grpc's balancer sent to each endpoint
  (``address:port``; ``pod`` from the snapshot, empty when it names none).

Picks happen inside grpc's C core, and grpc's client calls expose no peer to
Python; the counts come from grpc's channelz, which counts every call per
subchannel anyway. They are read when the metrics are collected, so the
option costs nothing per call. They are per target: every channel of the
target in the process counts, as they share grpc's connections. A series ends
when its endpoint has left the snapshot and its connection has closed; calls
completed after the last collection on a connection that then closed are lost.
Channels opened with ``("grpc.enable_channelz", 0)`` count nothing.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from kuberesolver.client import channelz
from kuberesolver.core.snapshot import Snapshot

__all__ = [
    "ENABLED",
    "PickCollector",
    "record_applied",
    "record_refused",
    "record_rejected",
    "track_picks",
]

log = logging.getLogger("kuberesolver")

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


def record_refused(target: str) -> None:
    """Record a snapshot that grpc's xDS client refused (its last accepted one stays)."""
    if ENABLED:
        _get()["updates"].labels(target, "refused_by_grpc").inc()


def record_rejected(target: str) -> None:
    """Record a snapshot that was refused (the last good one stays)."""
    if ENABLED:
        _get()["updates"].labels(target, "rejected").inc()


class PickCollector:
    """Collects ``kuberesolver_picks_total`` from channelz for the tracked xDS targets."""

    NAME = "kuberesolver_picks"
    DOC = "Completed calls grpc's balancer sent to each endpoint (from channelz)."

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # xDS target -> [label, snapshot getter, channels]
        self._targets: dict[str, list[Any]] = {}
        # (label, subchannel id) -> (endpoint, completed calls) at the last collection
        self._live: dict[tuple[str, int], tuple[str, int]] = {}
        # (label, endpoint) -> calls of its subchannels that closed since
        self._retired: dict[tuple[str, str], int] = {}
        self._pods: dict[tuple[str, str], str] = {}
        self._failed = False

    def track(self, xds_target: str, label: str, snapshot: Callable[[], Snapshot]) -> None:
        with self._lock:
            entry = self._targets.setdefault(xds_target, [label, snapshot, 0])
            entry[2] += 1

    def untrack(self, xds_target: str) -> None:
        with self._lock:
            entry = self._targets.get(xds_target)
            if entry is not None:
                entry[2] -= 1
                if entry[2] <= 0:
                    del self._targets[xds_target]

    @property
    def tracked(self) -> list[str]:
        """The tracked labels (``service.namespace:port``)."""
        with self._lock:
            return sorted({entry[0] for entry in self._targets.values()})

    def describe(self) -> Iterator[Any]:
        yield _prom.metrics_core.CounterMetricFamily(self.NAME, self.DOC, labels=_PICK_LABELS)

    def collect(self) -> Iterator[Any]:
        family = _prom.metrics_core.CounterMetricFamily(self.NAME, self.DOC, labels=_PICK_LABELS)
        for (label, endpoint, pod), value in sorted(self.counts().items()):
            family.add_metric([label, endpoint, pod], value)
        yield family

    def counts(self) -> dict[tuple[str, str, str], int]:
        """Completed calls by (target label, endpoint, pod), as of now.

        A failure to read channelz is logged once and yields nothing: it must
        not break the other metrics of the scrape.
        """
        with self._lock:
            try:
                return self._scrape()
            except Exception:
                if not self._failed:
                    self._failed = True
                    log.warning("pick metrics: cannot read grpc's channelz", exc_info=True)
                return {}

    def _scrape(self) -> dict[tuple[str, str, str], int]:
        labels = {entry[0]: entry[1] for entry in self._targets.values()}
        by_target = {target: entry[0] for target, entry in self._targets.items()}
        live: dict[tuple[str, int], tuple[str, int]] = {}
        for target, subchannel_ids in channelz.top_channels():
            label = by_target.get(target)
            if label is None:
                continue
            for sub_id in subchannel_ids:
                if (label, sub_id) in live:
                    continue  # shared by two channels of the target
                sub = channelz.subchannel(sub_id)
                if sub is not None:
                    live[(label, sub_id)] = (sub.endpoint, sub.completed)
        for sub_key, (endpoint, completed) in self._live.items():
            if sub_key not in live:  # closed: keep its calls so the counter never goes down
                retired = (sub_key[0], endpoint)
                self._retired[retired] = self._retired.get(retired, 0) + completed
        self._live = live
        totals = {key: value for key, value in self._retired.items() if key[0] in labels}
        for (label, _), (endpoint, completed) in live.items():
            totals[(label, endpoint)] = totals.get((label, endpoint), 0) + completed
        pods = {label: _pods_of(getter()) for label, getter in labels.items()}
        connected = {(label, endpoint) for (label, _), (endpoint, _) in live.items()}
        out: dict[tuple[str, str, str], int] = {}
        for key, value in totals.items():
            label, endpoint = key
            pod = pods[label].get(endpoint)
            if pod is None and key not in connected:  # gone from the snapshot and closed
                self._retired.pop(key, None)
                self._pods.pop(key, None)
                continue
            if pod:
                self._pods[key] = pod  # kept while its calls drain after it left
            out[(label, endpoint, self._pods.get(key, ""))] = value
        for key in [k for k in self._retired if k[0] not in labels]:
            del self._retired[key]
            self._pods.pop(key, None)
        return out


_PICK_LABELS = ["target", "endpoint", "pod"]
_picks: PickCollector | None = None
_picks_lock = threading.Lock()
_warned = False


def _pods_of(snapshot: Snapshot) -> dict[str, str]:
    return {channelz.endpoint_key(ep.address, ep.port): ep.pod or "" for ep in snapshot.endpoints}


def pick_collector() -> PickCollector | None:
    """The registered pick collector, if any channel ever turned pick metrics on."""
    return _picks


def track_picks(
    xds_target: str, label: str, snapshot: Callable[[], Snapshot]
) -> Callable[[], None] | None:
    """Export the picks of the channels on ``xds_target``; returns the call that stops it.

    Registers the collector with the default Prometheus registry on first use.
    Without ``prometheus_client``, logs one warning and returns None.
    """
    global _picks, _warned
    with _picks_lock:
        if _prom is None:
            if not _warned:
                _warned = True
                log.warning(
                    "pick_metrics is on but prometheus_client is not installed: no pick "
                    "metrics (install kuberesolver[metrics])"
                )
            return None
        if _picks is None:
            _picks = PickCollector()
            _prom.REGISTRY.register(_picks)
        collector = _picks
    collector.track(xds_target, label, snapshot)
    return functools.partial(collector.untrack, xds_target)
