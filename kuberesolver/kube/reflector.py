"""The one list-watch loop (client-go's reflector), over a small transport.

1. LIST; the list's ``resourceVersion`` is where the watch starts.
2. WATCH from there with bookmarks. ADDED/MODIFIED/DELETED objects are decoded
   by the caller's ``decode`` and handed on; a BOOKMARK only advances the
   resourceVersion. A watch the server ends is resumed from the last one seen.
3. ``410 Gone`` (an expired resourceVersion, as a status or an ERROR event)
   relists at once. Any other failure waits :class:`~kuberesolver.core.backoff.Backoff`
   (full jitter, capped), reset by the next success. A list refused with 401
   or 403 is logged once, with what was refused and ``refused_hint`` (what
   right is missing), and retried the same way.
4. Nothing it reads stops it: an object that fails to decode (or a handler
   that fails on it) is logged once per distinct problem and skipped; what
   was handed on before stays the caller's last good state.

It decodes nothing itself beyond ``type``, ``object`` and
``metadata.resourceVersion``: the transport yields raw JSON events and the
caller supplies ``decode``. A transport with a faster decoder of its own may
hand objects on already decoded (:attr:`Listed.decoded`, :class:`Decoded`).

:meth:`Reflector.run` blocks its thread; a caller on an event loop runs it on
a thread of its own and moves the callbacks over (``call_soon_threadsafe``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from kuberesolver.core.backoff import Backoff
from kuberesolver.kube.client import ApiError

__all__ = ["Decoded", "Listed", "Reflector", "Transport", "Watch"]

T = TypeVar("T")


@dataclass(frozen=True)
class Listed:
    """A list's raw items and its resourceVersion; ``decoded``: items the transport
    already decoded (handed on as they are, after those of ``items``)."""

    items: Sequence[Mapping[str, Any]]
    resource_version: str
    decoded: Sequence[Any] = ()


@dataclass(frozen=True, slots=True)
class Decoded:
    """An ADDED, MODIFIED or DELETED event whose object the transport already decoded."""

    type: str
    resource_version: str
    value: Any


class Watch(Protocol):
    """An open watch: events as they arrive (raw JSON, or :class:`Decoded`);
    ``close()`` from any thread, quickly (it must not wait for the reading thread)."""

    def __iter__(self) -> Iterator[Mapping[str, Any] | Decoded]: ...

    def close(self) -> None: ...


class Transport(Protocol):
    """One collection's list and watch. Errors: :class:`ApiError` (an answer) or ``OSError``."""

    @property
    def what(self) -> str:
        """What is listed, for log lines (e.g. ``configmaps demo/greeter``)."""
        ...

    def list(self) -> Listed: ...

    def watch(self, resource_version: str) -> Watch:
        """Watch from ``resource_version``, with bookmarks."""
        ...


class _Gone(Exception):
    """The resourceVersion expired: relist."""


def _rv(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata")
    return str(meta.get("resourceVersion") or "") if isinstance(meta, Mapping) else ""


class Reflector(Generic[T]):
    """Keeps a caller up to date with one collection.

    ``on_list(objects)`` gets every decodable object of each (re)list;
    ``on_event(type, object)`` each decodable ADDED/MODIFIED/DELETED after it.
    :meth:`run` blocks until :meth:`stop` (idempotent, from any thread).
    """

    def __init__(
        self,
        transport: Transport,
        decode: Callable[[Mapping[str, Any]], T],
        on_list: Callable[[list[T]], object],
        on_event: Callable[[str, T], object],
        *,
        log: logging.Logger,
        backoff: Backoff | None = None,
        refused_hint: str = "check the RBAC of this ServiceAccount",
    ) -> None:
        self.transport = transport
        self._decode = decode
        self._on_list = on_list
        self._on_event = on_event
        self._log = log
        self._refused_hint = refused_hint
        self.backoff = backoff or Backoff()
        self.resource_version = ""
        self.lists = 0
        self.gone = 0
        self.skipped = 0
        self.failures = 0
        self._problem: str | None = None
        self._refused: str | None = None
        self._stop = threading.Event()
        self._watch: Watch | None = None
        self._lock = threading.Lock()

    @property
    def refused(self) -> str | None:
        """The API's refusal of the last LIST (``"403 Forbidden"``), until one is allowed."""
        return self._refused

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            watch, self._watch = self._watch, None
        if watch is not None:
            watch.close()

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                if not self.resource_version:
                    self.relist()
                self._watch_once()
            except _Gone:
                self._relist_after_gone("an ERROR event")
            except (ApiError, OSError) as exc:
                if self._stop.is_set():
                    return
                if isinstance(exc, ApiError) and exc.status == 410:
                    self._relist_after_gone(str(exc))
                    continue
                self.failures += 1
                pause = self.backoff.next_s()
                self._log_failure(exc, pause)
                self._stop.wait(pause)
            except Exception:  # a bug in a callback: say so, never let the thread die
                self.failures += 1
                pause = self.backoff.next_s()
                self._log.exception("%s: failed; retrying in %.1f s", self.transport.what, pause)
                self._stop.wait(pause)

    def relist(self) -> None:
        """LIST now and hand every decodable object on; raises what the transport (or
        ``on_list``) raises. The watch starts from the list only once ``on_list`` took it."""
        listed = self.transport.list()
        objects = [obj for obj, _ in filter(None, map(self._decoded, listed.items))]
        objects.extend(listed.decoded)
        self.lists += 1
        self.backoff.reset()
        if self._refused is not None:
            self._log.info("%s: allowed again", self.transport.what)
            self._refused = None
        self._on_list(objects)
        self.resource_version = listed.resource_version

    # -- internals ------------------------------------------------------------------------

    def _relist_after_gone(self, why: str) -> None:
        self.gone += 1
        self._log.info(
            "%s: resourceVersion %s expired (%s); relisting",
            self.transport.what, self.resource_version, why,
        )  # fmt: skip
        self.resource_version = ""

    def _log_failure(self, exc: Exception, pause: float) -> None:
        if isinstance(exc, ApiError) and exc.status in (401, 403):
            refusal = f"{exc.status} {exc.reason}"
            if refusal == self._refused:
                self._log.debug("%s: still refused; retrying in %.1f s", self.transport.what, pause)
                return
            self._refused = refusal
            self._log.error(
                "%s: the API refused it (%s): %s; "
                "the last good state stays; retrying with backoff (logged once)",
                self.transport.what, refusal, self._refused_hint,
            )  # fmt: skip
            return
        self._log.warning(
            "%s: %s; the last good state stays; retrying in %.1f s",
            self.transport.what, exc, pause,
        )  # fmt: skip

    def _watch_once(self) -> None:
        watch = self.transport.watch(self.resource_version)
        with self._lock:
            if self._stop.is_set():
                watch.close()
                return
            self._watch = watch
        try:
            for event in watch:
                if self._stop.is_set():
                    return
                self.handle(event)
        finally:
            with self._lock:
                if self._watch is watch:
                    self._watch = None
            watch.close()

    def handle(self, event: Mapping[str, Any] | Decoded) -> None:
        """Apply one watch event; an ERROR event raises (410: relist, else back off)."""
        if isinstance(event, Decoded):
            self.backoff.reset()
            self.resource_version = event.resource_version or self.resource_version
            self._handed(event.type, event.value, "")
            return
        kind = str(event.get("type") or "")
        raw = event.get("object")
        obj: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
        if kind == "ERROR":
            code = int(obj.get("code") or 0)
            if code == 410:
                raise _Gone()
            raise ApiError(code, str(obj.get("message") or obj.get("reason") or "watch error"))
        self.backoff.reset()
        rv = _rv(obj)
        if kind == "BOOKMARK":
            self.resource_version = rv or self.resource_version
            return
        if kind not in ("ADDED", "MODIFIED", "DELETED"):
            self._skip(f"an event of type {kind!r}", None)
            return
        if not isinstance(raw, Mapping):
            self._skip(f"a {kind} event whose object is not an object", None)
            return
        decoded = self._decoded(obj)
        self.resource_version = rv or self.resource_version
        if decoded is not None:
            self._handed(kind, *decoded)

    def _handed(self, kind: str, value: T, label: str) -> None:
        try:
            self._on_event(kind, value)
        except Exception as exc:
            self._skip(f"{kind} {label or 'an object'}", exc)

    def _decoded(self, obj: Mapping[str, Any]) -> tuple[T, str] | None:
        label = _label(obj)
        try:
            return self._decode(obj), label
        except Exception as exc:
            self._skip(label, exc)
            return None

    def _skip(self, what: str, exc: Exception | None) -> None:
        self.skipped += 1
        problem = f"{what}: {type(exc).__name__}: {exc}" if exc is not None else what
        if problem == self._problem:
            return
        self._problem = problem
        self._log.error(
            "%s: skipping %s; the last good state stays",
            self.transport.what, problem, exc_info=exc,
        )  # fmt: skip


def _label(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping):
        return "an object without metadata"
    return f"{meta.get('namespace') or ''}/{meta.get('name') or '?'} (resourceVersion {_rv(obj)})"
