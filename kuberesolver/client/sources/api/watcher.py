"""Following one target through the API: list, then watch, on a daemon thread.

The loop is the shared :class:`~kuberesolver.kube.reflector.Reflector`
(client-go's), over :class:`SliceTransport` for the EndpointSlices of one Service:

1. LIST its EndpointSlices, then GET the Service (for its ports); the list's
   ``resourceVersion`` is where the watch starts.
2. WATCH from there with bookmarks; each ADDED/MODIFIED/DELETED event is
   folded in (:mod:`kuberesolver.client.sources.api.fold`) and a changed endpoint set is
   handed to ``on_change`` at once. BOOKMARK events only move the
   resourceVersion. The server ends each watch after
   ``watch_server_timeout_s`` (60 s) and it is resumed from the last
   resourceVersion seen; a stream silent for ``watch_timeout_s`` (90 s: a
   dead connection) counts as a failure.
3. ``410 Gone`` (an expired resourceVersion, as a status or an ERROR event)
   means relist, at once. Any other failure waits the one backoff with full
   jitter (:class:`~kuberesolver.core.backoff.Backoff`: at most
   ``backoff_base_ms``, doubling up to ``backoff_max_ms``), reset by the next
   success. Meanwhile the last good endpoints stay in place: an unreachable
   API never empties a channel.

Each request gives up after ``timeout_s`` (30 s: connecting and reading
together, with no retry hidden inside the HTTP client), so a channel whose
API host accepts connections and never answers fails after 30 s, with one log
line naming the host.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from kuberesolver.client.sources.api.fold import SliceSet, build_snapshot, resource_version
from kuberesolver.client.target import ParsedTarget
from kuberesolver.core.backoff import Backoff
from kuberesolver.core.endpointslices import (
    PortError,
    ServiceView,
    SliceView,
    service_view,
    slice_view,
)
from kuberesolver.core.snapshot import Snapshot
from kuberesolver.kube.client import ApiError, K8sClient, WatchStream
from kuberesolver.kube.reflector import Listed, Reflector

__all__ = ["ApiWatcher", "Backoff", "SliceTransport"]

log = logging.getLogger("kuberesolver.direct")


class SliceTransport:
    """A :class:`~kuberesolver.kube.reflector.Transport` for the EndpointSlices of one
    Service, over a :class:`~kuberesolver.kube.client.K8sClient`."""

    def __init__(
        self,
        client: K8sClient,
        target: ParsedTarget,
        what: str,
        *,
        timeout_s: float,
        watch_timeout_s: float,
        watch_server_timeout_s: int,
    ) -> None:
        self.client = client
        self.target = target
        self.what = what
        self._timeout_s = timeout_s
        self._watch_timeout_s = watch_timeout_s
        self._watch_server_timeout_s = watch_server_timeout_s

    def list(self) -> Listed:
        listed = self.client.list_endpoint_slices(
            self.target.namespace, self.target.service, timeout_s=self._timeout_s
        )
        items = [item for item in listed.get("items") or () if isinstance(item, Mapping)]
        return Listed(items, resource_version(listed))

    def watch(self, resource_version: str) -> WatchStream:
        return self.client.watch_endpoint_slices(
            self.target.namespace,
            self.target.service,
            resource_version,
            timeout_s=self._watch_timeout_s,
            server_timeout_s=self._watch_server_timeout_s,
        )


class ApiWatcher:
    """Follows one Service port's endpoints; ``on_change`` gets each new snapshot.

    :meth:`sync` does the first list in the caller's thread (its errors are
    the caller's to see); :meth:`start` runs the watch loop on a daemon thread.
    """

    def __init__(
        self,
        client: K8sClient,
        target: ParsedTarget,
        on_change: Callable[[Snapshot], None],
        *,
        service_config: Mapping[str, Any] | None = None,
        timeout_s: float = 30.0,
        watch_timeout_s: float = 90.0,
        watch_server_timeout_s: int = 60,
        backoff_base_ms: int = 200,
        backoff_max_ms: int = 30_000,
    ) -> None:
        self.client = client
        self.target = target
        self._on_change = on_change
        self._service_config = dict(service_config or {})
        self._timeout_s = timeout_s
        # the first pause is at most backoff_base_ms; it doubles up to backoff_max_ms
        self.backoff = Backoff(backoff_base_ms / 2000, backoff_max_ms / 1000)
        self._slices = SliceSet()
        self._service: ServiceView | None = None
        self._snapshot: Snapshot | None = None
        self._strict = False
        self._thread: threading.Thread | None = None
        self.events = 0
        transport = SliceTransport(
            client, target, self._label, timeout_s=timeout_s,
            watch_timeout_s=watch_timeout_s, watch_server_timeout_s=watch_server_timeout_s,
        )  # fmt: skip
        self.reflector: Reflector[SliceView] = Reflector(
            transport, slice_view, self._on_list, self._on_event, log=log, backoff=self.backoff,
            refused_hint=f"the ServiceAccount needs get on services and list and watch on "
            f"endpointslices in namespace {target.namespace}",
        )  # fmt: skip

    @property
    def lists(self) -> int:
        return self.reflector.lists

    @property
    def failures(self) -> int:
        return self.reflector.failures

    @property
    def gone(self) -> int:
        """410s seen: expired resourceVersions."""
        return self.reflector.gone

    @property
    def snapshot(self) -> Snapshot:
        if self._snapshot is None:
            raise RuntimeError(f"{self.target.server_name}: not synced yet")
        return self._snapshot

    @snapshot.setter
    def snapshot(self, snapshot: Snapshot) -> None:
        """Go back to ``snapshot`` (what grpc last accepted); the next change builds on it."""
        self._snapshot = snapshot

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def sync(self) -> Snapshot:
        """List now (slices and Service) and return the snapshot; raises what the API says,
        after one log line that names the API host (each request gives up after ``timeout_s``)."""
        self._strict = True
        try:
            self.reflector.relist()
        except (ApiError, OSError) as exc:
            log.error("%s: the first list failed: %s", self._label, exc)
            raise
        finally:
            self._strict = False
        return self.snapshot

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self.reflector.run,
            name=f"kuberesolver-api-{self.target.server_name}",
            daemon=True,
        )
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop watching. Idempotent."""
        self.reflector.stop()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)

    # -- what the reflector hands on ------------------------------------------

    def _on_list(self, views: list[SliceView]) -> None:
        service = self._get_service()
        self._service = service
        self._slices.replace(views)
        if service is None:
            log.error(
                "%s: Service %s/%s not found; no endpoints until it exists",
                self._label,
                self.target.namespace,
                self.target.service,
            )
        self._publish(strict=self._strict)

    def _on_event(self, kind: str, view: SliceView) -> None:
        self.events += 1
        if self._slices.apply(kind, view):
            if self._service is None:
                self._service = self._get_service()
            self._publish()

    def _get_service(self) -> ServiceView | None:
        try:
            body = self.client.get_service(
                self.target.namespace, self.target.service, timeout_s=self._timeout_s
            )
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return service_view(body)

    def _publish(self, strict: bool = False) -> None:
        try:
            snapshot = build_snapshot(
                self._service,
                self._slices.views,
                name=self.target.service,
                namespace=self.target.namespace,
                port=self.target.port,
                previous=self._snapshot,
                service_config=self._service_config,
            )
        except PortError as exc:
            if strict:
                raise
            log.error("%s: %s; keeping the last good endpoints", self._label, exc)
            return
        previous, self._snapshot = self._snapshot, snapshot
        if previous is None or previous.revision == snapshot.revision:
            return
        try:
            self._on_change(snapshot)
        except Exception:
            log.exception("%s: applying revision %d failed", self._label, snapshot.revision)

    @property
    def _label(self) -> str:
        port = f":{self.target.port}" if self.target.port else ""
        return f"{self.target.server_name}{port} (API {self.client.host})"
