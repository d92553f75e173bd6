"""Prometheus metrics of the operator, in their own registry.

- ``kuberesolver_operator_targets``: GrpcTargets being reconciled.
- ``kuberesolver_operator_endpoints{namespace,target,state}``: published
  endpoints, ``state`` = ``ready``, ``not_ready`` or ``terminating``, one state
  per endpoint (:func:`endpoint_states`): their sum is every endpoint published.
- ``kuberesolver_operator_configmap_writes_total{operation}``: ``create`` or ``update``.
- ``kuberesolver_operator_configmap_write_errors_total{reason}``: ConfigMap writes
  that failed: ``conflict`` (changed meanwhile, or not ours), ``refused`` (422),
  ``failed`` (any other API error); the last good ConfigMap stays.
- ``kuberesolver_operator_reconcile_seconds``: from the first wake-up (an index
  change) to the end of the reconcile that served it.
- ``kuberesolver_operator_errors_total{kind}``: ``api``, ``render``, ``spec``,
  ``conflict``, ``refused``, ``internal``.
- ``kuberesolver_operator_leader``: 1 on the replica that holds the Lease, else 0.
- ``kuberesolver_operator_build_info{version}``: always 1.
- ``kuberesolver_operator_admissions_total{outcome,reason}``: webhook admissions;
  ``outcome`` = ``injected``, ``skipped`` (``reason`` says why), ``unchanged``
  (nothing asked for), ``error``; ``reason`` is empty but for ``skipped``.
- ``kuberesolver_operator_admission_seconds``: how long an admission took.
- ``kuberesolver_operator_webhook_certificate_expiry_seconds``: until the served
  webhook certificate expires (absent while none is served).
- ``kuberesolver_operator_xds_denials_total{reason}``: xDS subscriptions refused,
  per check: ``no_token``, ``unknown_target``, ``token_refused``, ``forbidden``
  (RBAC said no), ``api_error``.
- The process (``process_*``: CPU, memory, open files), the platform
  (``python_info``) and the garbage collector (``python_gc_*``).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, MutableMapping
from typing import Any, Final, Literal
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from kuberesolver._version import __version__
from kuberesolver.core.snapshot import Endpoint

__all__ = [
    "ADMISSION_OUTCOMES",
    "ENDPOINT_STATES",
    "SKIP_REASONS",
    "WRITE_ERROR_REASONS",
    "XDS_DENIAL_REASONS",
    "Metrics",
    "endpoint_states",
    "shared",
]

_PREFIX: Final = "kuberesolver_operator_"
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_ADMISSION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0)

EndpointState = Literal["ready", "not_ready", "terminating"]
ENDPOINT_STATES: Final[tuple[EndpointState, ...]] = ("ready", "not_ready", "terminating")
AdmissionOutcome = Literal["injected", "skipped", "unchanged", "error"]
ADMISSION_OUTCOMES: Final[tuple[AdmissionOutcome, ...]] = (
    "injected",
    "skipped",
    "unchanged",
    "error",
)
SKIP_REASONS: Final = (
    "bad_annotation",
    "too_many_names",
    "unknown_target",
    "unusable_target",
    "conflict",
    "forbidden",
    "namespace_not_watched",
    "deadline",
    "api_error",
    "xds",
    "other",
)
XDS_DENIAL_REASONS: Final = (
    "no_token",
    "unknown_target",
    "token_refused",
    "forbidden",
    "api_error",
)
WRITE_ERROR_REASONS: Final = {
    "ConfigMapConflict": "conflict",
    "WriteRefused": "refused",
    "WriteFailed": "failed",
}
"""A failed write's condition reason, and its label."""
_ERROR_KINDS: Final = ("api", "render", "spec", "conflict", "refused", "internal")


def endpoint_states(endpoints: Iterable[Endpoint]) -> dict[EndpointState, int]:
    """How many endpoints are in each state; each endpoint counts in exactly one.

    ``ready``: gets new traffic (the snapshot's ready endpoints); ``terminating``:
    being removed (ready or not); ``not_ready``: the rest.

    >>> endpoint_states([Endpoint("10.0.0.1", 1), Endpoint("10.0.0.2", 1, ready=False),
    ...                  Endpoint("10.0.0.3", 1, terminating=True)])
    {'ready': 1, 'not_ready': 1, 'terminating': 1}
    """
    counts: dict[EndpointState, int] = dict.fromkeys(ENDPOINT_STATES, 0)
    for e in endpoints:
        counts["terminating" if e.terminating else "ready" if e.ready else "not_ready"] += 1
    return counts


class Metrics:
    """The operator's metrics; ``process=False`` leaves the process-wide collectors out
    (for tests that build several)."""

    def __init__(self, registry: CollectorRegistry | None = None, *, process: bool = True) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        if process:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)  # CPython only: elsewhere it adds nothing
        gauge, counter, histogram = self._gauge, self._counter, self._histogram
        self.targets = gauge("targets", "GrpcTargets being reconciled")
        self.endpoints = gauge(
            "endpoints",
            "Endpoints in the published snapshot, by state (the states sum to all of them)",
            ("namespace", "target", "state"),
        )
        self.configmap_writes = counter("configmap_writes", "ConfigMap writes", ("operation",))
        self.configmap_write_errors = counter(
            "configmap_write_errors", "ConfigMap writes that failed, by reason", ("reason",)
        )
        self.reconcile_seconds = histogram(
            "reconcile_seconds", "From an index change to the reconcile that served it", _BUCKETS
        )
        self.errors = counter("errors", "Errors by kind", ("kind",))
        self.leader = gauge("leader", "1 on the replica that holds the Lease (and writes), else 0")
        self.build_info = gauge("build_info", "The operator's version (always 1)", ("version",))
        self.build_info.labels(__version__).set(1)
        self.admissions = counter(
            "admissions",
            "Webhook admissions by outcome (reason: why an injection was skipped)",
            ("outcome", "reason"),
        )
        self.admission_seconds = histogram(
            "admission_seconds", "How long one webhook admission took", _ADMISSION_BUCKETS
        )
        self._expiry_source: Callable[[], float | None] | None = None
        self.registry.register(_CertificateExpiry(self._seconds_left))
        self.xds_denials = counter(
            "xds_denials", "xDS subscriptions refused, per check, by reason", ("reason",)
        )
        for kind in _ERROR_KINDS:
            self.errors.labels(kind)
        for op in ("create", "update"):
            self.configmap_writes.labels(op)
        for reason in WRITE_ERROR_REASONS.values():
            self.configmap_write_errors.labels(reason)
        for outcome in ("injected", "unchanged", "error"):
            self.admissions.labels(outcome, "")
        for reason in SKIP_REASONS:
            self.admissions.labels("skipped", reason)
        for reason in XDS_DENIAL_REASONS:
            self.xds_denials.labels(reason)
        self._server: tuple[WSGIServer, threading.Thread] | None = None

    def _gauge(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(f"{_PREFIX}{name}", doc, labels, registry=self.registry)

    def _counter(self, name: str, doc: str, labels: tuple[str, ...]) -> Counter:
        return Counter(f"{_PREFIX}{name}", doc, labels, registry=self.registry)

    def _histogram(self, name: str, doc: str, buckets: tuple[float, ...]) -> Histogram:
        return Histogram(f"{_PREFIX}{name}", doc, buckets=buckets, registry=self.registry)

    def set_endpoints(self, namespace: str, target: str, endpoints: Iterable[Endpoint]) -> None:
        for state, count in endpoint_states(endpoints).items():
            self.endpoints.labels(namespace, target, state).set(count)

    def forget_target(self, namespace: str, target: str) -> None:
        for state in ENDPOINT_STATES:
            with contextlib.suppress(KeyError):
                self.endpoints.remove(namespace, target, state)

    def follow_leadership(self, leading: Callable[[], bool]) -> None:
        """``kuberesolver_operator_leader`` reads ``leading()`` at every scrape, on the
        metrics server's thread (so never ``asyncio.get_running_loop``)."""
        self.leader.set_function(lambda: 1.0 if leading() else 0.0)

    def follow_certificate(self, seconds_left: Callable[[], float | None]) -> None:
        """The certificate gauge reads ``seconds_left()`` at every scrape; it has no
        sample while that is None (no certificate served yet)."""
        self._expiry_source = seconds_left

    def _seconds_left(self) -> float | None:
        source = self._expiry_source
        return None if source is None else source()

    def skipped(self, reason: str) -> None:
        self.admissions.labels("skipped", reason).inc()

    def write_failed(self, condition_reason: str) -> None:
        self.configmap_write_errors.labels(
            WRITE_ERROR_REASONS.get(condition_reason, "failed")
        ).inc()

    def xds_denied(self, reason: str) -> None:
        self.xds_denials.labels(reason).inc()

    def value(self, name: str, **labels: str) -> float:
        """A sample's value, 0 if absent."""
        found = self.registry.get_sample_value(name, labels)
        return 0.0 if found is None else float(found)

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:
        """Serve ``/metrics`` on ``port`` (0: do nothing). Idempotent."""
        if port and self._server is None:
            self._server = start_http_server(port, addr=addr, registry=self.registry)

    def close(self) -> None:
        server = self._server
        self._server = None
        if server is not None:
            httpd, thread = server
            httpd.shutdown()
            httpd.server_close()
            thread.join(timeout=5)


class _CertificateExpiry:
    """``kuberesolver_operator_webhook_certificate_expiry_seconds``, read at each scrape."""

    NAME: Final = "kuberesolver_operator_webhook_certificate_expiry_seconds"

    def __init__(self, seconds_left: Callable[[], float | None]) -> None:
        self._seconds_left = seconds_left

    def describe(self) -> list[GaugeMetricFamily]:
        return [self._family()]

    def collect(self) -> list[GaugeMetricFamily]:
        family = self._family()
        value = self._seconds_left()
        if value is not None:
            family.add_metric([], value)
        return [family]

    def _family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(
            self.NAME, "Seconds until the served webhook certificate expires", labels=[]
        )


def shared(memo: MutableMapping[str, Any]) -> Metrics:
    """The one :class:`Metrics` of this process, kept in kopf's memo (the operator's and
    the webhook's startup handlers both ask; the first creates it)."""
    found = memo.get("metrics")
    if not isinstance(found, Metrics):
        found = memo["metrics"] = Metrics()
    return found
