"""Optional Prometheus metrics, into the registry the caller passes, or nowhere.

Metrics go only where the caller says: ``registry=`` on a channel constructor
takes a ``prometheus_client.CollectorRegistry``, and that target's metrics go
there. Without it (the default) nothing is recorded, and the global
``prometheus_client.REGISTRY`` is never touched unless passed explicitly
(``registry=prometheus_client.REGISTRY``). Several registries can follow the
same target; every channel's registry gets the target's series. Needs the
``metrics`` extra (``pip install kuberesolver[metrics]``). Recorded:

- ``kuberesolver_endpoints{target,state}``: endpoints in the last good
  snapshot, by state (``ready``, ``terminating``, ``not_ready``);
- ``kuberesolver_updates_total{target,result}``: snapshots ``applied``,
  ``rejected`` (deleted, corrupt, unknown version, wrong target, or an error
  while reading it) or ``refused_by_grpc`` (grpc's xDS client NACKed it);
- ``kuberesolver_last_update_timestamp_seconds{target}``: when the last good
  snapshot was applied;
- ``kuberesolver_revision{target}``: its revision.

With ``pick_metrics=True`` (or ``KUBERESOLVER_PICK_METRICS=1``) and a registry, also:

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
from collections.abc import Callable, Iterable, Iterator
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

_families: dict[int, tuple[Any, dict[str, Any]]] = {}
"""id(registry) -> (registry, its metric families): one set per registry passed."""
_families_lock = threading.Lock()


def _get(registry: Any) -> dict[str, Any]:
    with _families_lock:
        found = _families.get(id(registry))
        if found is not None:
            return found[1]
        families = {
            "endpoints": _prom.Gauge(
                "kuberesolver_endpoints",
                "Endpoints in the last good snapshot, by state.",
                ["target", "state"],
                registry=registry,
            ),
            "updates": _prom.Counter(
                "kuberesolver_updates",
                "Snapshots applied or rejected.",
                ["target", "result"],
                registry=registry,
            ),
            "last_update": _prom.Gauge(
                "kuberesolver_last_update_timestamp_seconds",
                "When the last good snapshot was applied (Unix time).",
                ["target"],
                registry=registry,
            ),
            "revision": _prom.Gauge(
                "kuberesolver_revision",
                "Revision of the last good snapshot.",
                ["target"],
                registry=registry,
            ),
        }
        _families[id(registry)] = (registry, families)
        return families


def _usable(registries: Iterable[Any]) -> list[Any]:
    if _prom is None:
        return []
    return list(registries)


def record_applied(target: str, snapshot: Snapshot, registries: Iterable[Any] = ()) -> None:
    """Record a good snapshot for ``target`` (``service.namespace:port``) in ``registries``."""
    chosen = _usable(registries)
    if not chosen:
        return
    states = {"ready": 0, "terminating": 0, "not_ready": 0}
    for ep in snapshot.endpoints:
        if ep.terminating:
            states["terminating"] += 1
        elif ep.ready:
            states["ready"] += 1
        else:
            states["not_ready"] += 1
    now = time.time()
    for registry in chosen:
        m = _get(registry)
        for state, count in states.items():
            m["endpoints"].labels(target, state).set(count)
        m["updates"].labels(target, "applied").inc()
        m["last_update"].labels(target).set(now)
        m["revision"].labels(target).set(snapshot.revision)


def record_refused(target: str, registries: Iterable[Any] = ()) -> None:
    """Record a snapshot that grpc's xDS client refused (its last accepted one stays)."""
    for registry in _usable(registries):
        _get(registry)["updates"].labels(target, "refused_by_grpc").inc()


def record_rejected(target: str, registries: Iterable[Any] = ()) -> None:
    """Record a snapshot that was refused (the last good one stays)."""
    for registry in _usable(registries):
        _get(registry)["updates"].labels(target, "rejected").inc()


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
_picks: dict[int, tuple[Any, PickCollector]] = {}
"""id(registry) -> (registry, its pick collector)."""
_picks_lock = threading.Lock()
_warned: set[str] = set()


def _pods_of(snapshot: Snapshot) -> dict[str, str]:
    return {channelz.endpoint_key(ep.address, ep.port): ep.pod or "" for ep in snapshot.endpoints}


def pick_collector(registry: Any) -> PickCollector | None:
    """The pick collector registered with ``registry``, if a channel asked for one there."""
    with _picks_lock:
        found = _picks.get(id(registry))
        return None if found is None else found[1]


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        log.warning("%s", message)


def track_picks(
    xds_target: str, label: str, snapshot: Callable[[], Snapshot], registry: Any
) -> Callable[[], None] | None:
    """Export the picks of the channels on ``xds_target`` to ``registry``; returns the
    call that stops it.

    Registers a collector with ``registry`` on its first use. Without a registry,
    or without ``prometheus_client``, logs one warning and returns None.
    """
    with _picks_lock:
        if _prom is None:
            _warn_once(
                "prom",
                "pick_metrics is on but prometheus_client is not installed: no pick "
                "metrics (install kuberesolver[metrics])",
            )
            return None
        if registry is None:
            _warn_once(
                "registry",
                "pick_metrics is on but the channel has no registry=: no pick metrics (pass "
                "a prometheus_client.CollectorRegistry, or prometheus_client.REGISTRY for "
                "the global one)",
            )
            return None
        found = _picks.get(id(registry))
        if found is None:
            found = (registry, PickCollector())
            registry.register(found[1])
            _picks[id(registry)] = found
        collector = found[1]
    collector.track(xds_target, label, snapshot)
    return functools.partial(collector.untrack, xds_target)
