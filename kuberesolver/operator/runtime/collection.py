"""The operator's transport for the shared reflector: one collection over :class:`.kube.Http`.

A LIST is paginated (:data:`PAGE` items a page, each page one request that
gives up after :data:`LIST_TIMEOUT_S`); a WATCH asks for bookmarks and for
the server to end it after ``watch_timeout_s``, and gives up after
:data:`~kuberesolver.kube.kubeconfig.CONNECT_TIMEOUT_S` to connect or 30 s
more than that of silence. No request is retried inside (``retries=False``).

A :class:`FastCodec`, when given, decodes the raw bytes of a page or an
event straight to what the caller's ``decode`` would make of them; where it
declines (``None``), the plain path (JSON, then the reflector's ``decode``) reads it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any, Final, Protocol

import urllib3

from kuberesolver.kube.client import ApiError as AnswerError
from kuberesolver.kube.client import json_object
from kuberesolver.kube.kubeconfig import CONNECT_TIMEOUT_S
from kuberesolver.kube.reflector import Decoded, Listed
from kuberesolver.operator.runtime.kube import ApiError, Http

__all__ = ["LIST_TIMEOUT_S", "PAGE", "Collection", "FastCodec"]

PAGE: Final = 500
LIST_TIMEOUT_S: Final = 60.0


class FastCodec(Protocol):
    """Decoders of raw JSON straight to what ``decode`` makes of it; ``None``: not this one."""

    def event(self, line: bytes) -> tuple[str, str, Any] | None:
        """``(type, resourceVersion, decoded)`` of an ADDED, MODIFIED or DELETED event."""

    def page(self, data: bytes) -> tuple[list[Any], str, str] | None:
        """``(decoded items, continue token, resourceVersion)`` of a LIST page."""


def _translated(exc: ApiError) -> Exception:
    """The operator's API error as the reflector reads it: an answer, or ``OSError`` (none)."""
    return AnswerError(exc.status, exc.reason or str(exc)) if exc.status else OSError(str(exc))


class Collection:
    """A :class:`~kuberesolver.kube.reflector.Transport` for the collection at ``path``."""

    def __init__(
        self,
        http: Http,
        path: str,
        what: str,
        *,
        label_selector: str = "",
        watch_timeout_s: int = 300,
        fast: FastCodec | None = None,
    ) -> None:
        self.http = http
        self.path = path
        self.what = what
        self._query = {"labelSelector": label_selector} if label_selector else {}
        self.watch_timeout_s = watch_timeout_s
        self._fast = fast

    def _get(
        self, query: Mapping[str, str], timeout: urllib3.Timeout, *, stream: bool = False
    ) -> urllib3.BaseHTTPResponse:
        try:
            return self.http.send(
                f"list {self.what}", "GET", self.path, {**self._query, **query},
                None, "", timeout, stream=stream,
            )  # fmt: skip
        except ApiError as exc:
            raise _translated(exc) from exc

    def list(self) -> Listed:
        items: list[Mapping[str, Any]] = []
        decoded: list[Any] = []
        token = ""
        while True:
            query = {"limit": str(PAGE), **({"continue": token} if token else {})}
            data = self._get(query, urllib3.Timeout(total=LIST_TIMEOUT_S)).data
            page = self._fast.page(data) if self._fast is not None else None
            if page is not None:
                objects, token, version = page
                decoded.extend(objects)
            else:
                body = json_object(data, self.path)
                items.extend(i for i in body.get("items") or () if isinstance(i, Mapping))
                meta = body.get("metadata") or {}
                token, version = meta.get("continue") or "", str(meta.get("resourceVersion") or "")
            if not token:
                return Listed(items, version, decoded)

    def watch(self, resource_version: str) -> _Stream:
        query = {
            "watch": "true",
            "allowWatchBookmarks": "true",
            "resourceVersion": resource_version,
            "timeoutSeconds": str(self.watch_timeout_s),
        }
        timeout = urllib3.Timeout(connect=CONNECT_TIMEOUT_S, read=self.watch_timeout_s + 30)
        return _Stream(self._get(query, timeout, stream=True), self.path, self._fast)


class _Stream:
    """A watch answer read as it arrives: one event per line.

    :meth:`close` only shuts the socket down for reading, which ends a blocked
    read on the reflector's thread at once; it never waits for that thread
    (closing the answer would wait for the lock the reading thread holds).
    The reading thread gives the connection back when it is done.
    """

    def __init__(self, resp: urllib3.BaseHTTPResponse, path: str, fast: FastCodec | None) -> None:
        self._resp = resp
        self._path = path
        self._fast = fast
        self._reading = False

    def __iter__(self) -> Iterator[Mapping[str, Any] | Decoded]:
        self._reading = True
        try:
            for line in _lines(self._resp):
                fast = self._fast.event(line) if self._fast is not None else None
                if fast is not None:
                    yield Decoded(*fast)
                    continue
                yield json_object(line, self._path)
        except (urllib3.exceptions.HTTPError, ValueError) as exc:
            raise OSError(f"watch {self._path} broke: {type(exc).__name__}: {exc}") from exc
        finally:
            with contextlib.suppress(Exception):
                self._resp.release_conn()

    def close(self) -> None:
        with contextlib.suppress(Exception):  # already released or closed: nothing to end
            self._resp.shutdown()
        if not self._reading:  # never read: nobody else holds it, and its body is unread
            with contextlib.suppress(Exception):
                self._resp.close()


def _lines(resp: urllib3.BaseHTTPResponse) -> Iterator[bytes]:
    """The non-empty lines of a watch answer, as bytes (one event each)."""
    pending = b""
    for chunk in resp.stream(amt=None, decode_content=False):
        lines = (pending + chunk).split(b"\n") if pending else chunk.split(b"\n")
        pending = lines.pop()
        for line in lines:
            if line:
                yield line
    if pending:
        yield pending
