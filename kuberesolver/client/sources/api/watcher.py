"""Following one target through the API: list, then watch, on a daemon thread.

The loop (client-go's reflector, for one Service):

1. GET the Service (for its ports) and LIST its EndpointSlices; the list's
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
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from kuberesolver.client.sources.api.fold import SliceSet, build_snapshot, resource_version
from kuberesolver.client.target import ParsedTarget
from kuberesolver.core.backoff import Backoff
from kuberesolver.core.endpointslices import PortError, ServiceView, service_view
from kuberesolver.core.snapshot import Snapshot
from kuberesolver.kube.client import ApiError, K8sClient, WatchStream

__all__ = ["ApiWatcher", "Backoff"]

log = logging.getLogger("kuberesolver.direct")


class _Gone(Exception):
    """The resourceVersion expired: relist."""


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
        self._watch_timeout_s = watch_timeout_s
        self._watch_server_timeout_s = watch_server_timeout_s
        # the first pause is at most backoff_base_ms; it doubles up to backoff_max_ms
        self.backoff = Backoff(backoff_base_ms / 2000, backoff_max_ms / 1000)
        self._slices = SliceSet()
        self._service: ServiceView | None = None
        self._rv = ""
        self._snapshot: Snapshot | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stream: WatchStream | None = None
        self._stream_lock = threading.Lock()
        self.lists = 0
        self.events = 0
        self.failures = 0
        self.gone = 0  # 410s seen: expired resourceVersions

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
        """List now (Service and slices) and return the snapshot; raises what the API says."""
        self._relist(initial=True)
        return self.snapshot

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._run, name=f"kuberesolver-api-{self.target.server_name}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop watching. Idempotent."""
        self._stop.set()
        with self._stream_lock:
            stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)

    # -- the loop ------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if not self._rv:
                    self._relist(initial=False)
                    self.backoff.reset()
                self._watch_once()
            except _Gone:
                log.info("%s: resourceVersion %s expired; relisting", self._label, self._rv)
                self.gone += 1
                self._rv = ""
            except (ApiError, OSError, PortError, ValueError) as exc:
                if self._stop.is_set():
                    break
                if isinstance(exc, ApiError) and exc.status == 410:
                    log.info("%s: %s; relisting", self._label, exc)
                    self.gone += 1
                    self._rv = ""
                    continue
                self.failures += 1
                pause = self.backoff.next_s()
                log.warning(
                    "%s: %s; keeping the last %d endpoints, retrying in %.1f s",
                    self._label,
                    exc,
                    len(self._snapshot.endpoints) if self._snapshot else 0,
                    pause,
                )
                self._stop.wait(pause)
            except Exception:  # a bug: say so, never let the thread die silently
                log.exception("%s: watch loop failed; retrying", self._label)
                self._stop.wait(self.backoff.next_s())

    def _watch_once(self) -> None:
        stream = self.client.watch_endpoint_slices(
            self.target.namespace,
            self.target.service,
            self._rv,
            timeout_s=self._watch_timeout_s,
            server_timeout_s=self._watch_server_timeout_s,
        )
        with self._stream_lock:
            if self._stop.is_set():
                stream.close()
                return
            self._stream = stream
        try:
            for event in stream:
                if self._stop.is_set():
                    return
                self._handle(event)
        finally:
            with self._stream_lock:
                if self._stream is stream:
                    self._stream = None
            stream.close()

    def _handle(self, event: Mapping[str, Any]) -> None:
        kind = str(event.get("type") or "")
        obj: Mapping[str, Any] = event.get("object") or {}
        if kind == "ERROR":
            code = int(obj.get("code") or 0)
            if code == 410:
                raise _Gone()
            raise ApiError(code, str(obj.get("message") or obj.get("reason") or "watch error"))
        self.backoff.reset()
        rv = resource_version(obj)
        if kind == "BOOKMARK":
            self._rv = rv or self._rv
            return
        self.events += 1
        changed = self._slices.apply(kind, obj)
        self._rv = rv or self._rv
        if changed:
            if self._service is None:
                self._service = self._get_service()
            self._publish()

    def _relist(self, *, initial: bool) -> None:
        service = self._get_service()
        listed = self.client.list_endpoint_slices(
            self.target.namespace, self.target.service, timeout_s=self._timeout_s
        )
        items = listed.get("items") or []
        self._service = service
        self._slices.replace(item for item in items if isinstance(item, Mapping))
        self._rv = resource_version(listed)
        self.lists += 1
        if service is None:
            log.error(
                "%s: Service %s/%s not found; no endpoints until it exists",
                self._label,
                self.target.namespace,
                self.target.service,
            )
        self._publish(strict=initial)

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
