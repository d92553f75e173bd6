"""Prometheus metrics of the operator, in their own registry.

- ``kuberesolver_operator_targets``: GrpcTargets being reconciled.
- ``kuberesolver_operator_endpoints{namespace,target,state}``: published
  endpoints, ``state`` = ``ready`` or ``total``.
- ``kuberesolver_operator_configmap_writes_total{operation}``: ``create`` or ``update``.
- ``kuberesolver_operator_reconcile_seconds``: from the first wake-up (an index
  change) to the end of the reconcile that served it.
- ``kuberesolver_operator_errors_total{kind}``: ``api``, ``render``, ``spec``,
  ``conflict``, ``refused``.
"""

from __future__ import annotations

import contextlib
import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

__all__ = ["Metrics"]

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.targets = Gauge(
            "kuberesolver_operator_targets",
            "GrpcTargets being reconciled",
            registry=self.registry,
        )
        self.endpoints = Gauge(
            "kuberesolver_operator_endpoints",
            "Endpoints in the published snapshot",
            ["namespace", "target", "state"],
            registry=self.registry,
        )
        self.configmap_writes = Counter(
            "kuberesolver_operator_configmap_writes",
            "ConfigMap writes",
            ["operation"],
            registry=self.registry,
        )
        self.reconcile_seconds = Histogram(
            "kuberesolver_operator_reconcile_seconds",
            "From an index change to the reconcile that served it",
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter(
            "kuberesolver_operator_errors",
            "Errors by kind",
            ["kind"],
            registry=self.registry,
        )
        for kind in ("api", "render", "spec", "conflict", "refused"):
            self.errors.labels(kind)
        for op in ("create", "update"):
            self.configmap_writes.labels(op)
        self._server: tuple[WSGIServer, threading.Thread] | None = None

    def set_endpoints(self, namespace: str, target: str, ready: int, total: int) -> None:
        self.endpoints.labels(namespace, target, "ready").set(ready)
        self.endpoints.labels(namespace, target, "total").set(total)

    def forget_target(self, namespace: str, target: str) -> None:
        for state in ("ready", "total"):
            with contextlib.suppress(KeyError):
                self.endpoints.remove(namespace, target, state)

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
