"""A small Kubernetes API client on httpx: GET JSON, stream a watch, as a reflector transport.

Used by the projector instead of the ``kubernetes`` package (126 MB
installed). Only what a list-watch needs: bearer tokens (a token file is
re-read when it changes on disk and after a 401), client certificates, a CA.
``httpx`` is imported when a client is made, never at module import.

Deadlines: httpx retries nothing, so a GET gives up after ``timeout_s`` (30 s)
without an answer, and a watch after ``timeout_s`` to connect and its read
timeout of silence; the error names the API server, so the one log line the
reflector writes for it does too.
"""

from __future__ import annotations

import json
import os
import ssl
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from kuberesolver.kube.client import ApiError, json_object
from kuberesolver.kube.credentials import ApiConfig
from kuberesolver.kube.reflector import Listed

__all__ = ["Collection", "HttpApi"]


class HttpApi:
    """One connection pool to one API server, with ``config``'s credentials."""

    def __init__(self, config: ApiConfig, *, timeout_s: float = 30.0) -> None:
        import httpx

        context = ssl.create_default_context(cafile=config.ca_file or None)
        if config.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if config.client_cert_file:
            context.load_cert_chain(config.client_cert_file, config.client_key_file or None)
        self.config = config
        self.timeout_s = timeout_s
        self._httpx = httpx
        self._client = httpx.Client(base_url=config.server, verify=context, timeout=timeout_s)
        self._token = config.token
        self._stamp: tuple[int, int, int] | None = None
        self._lock = threading.Lock()

    def get_json(self, path: str, params: Mapping[str, str]) -> Mapping[str, Any]:
        return json_object(self._send(path, params, self.timeout_s, stream=False), path)

    def stream(self, path: str, params: Mapping[str, str], read_timeout_s: float) -> _Stream:
        response = self._send(path, params, read_timeout_s, stream=True)
        return _Stream(response, path, self._httpx)

    def close(self) -> None:
        self._client.close()

    def _send(self, path: str, params: Mapping[str, str], timeout_s: float, *, stream: bool) -> Any:
        httpx = self._httpx
        timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, self.timeout_s))
        for attempt in (1, 2):
            request = self._client.build_request(
                "GET", path, params=dict(params), headers=self._headers(), timeout=timeout
            )
            try:
                response = self._client.send(request, stream=True)
            except httpx.HTTPError as exc:  # no answer: refused, reset, timed out
                raise OSError(f"GET {self.config.server}{path}: {_said(exc)}") from exc
            if response.status_code < 400:
                if stream:
                    return response
                try:
                    return response.read()
                except httpx.HTTPError as exc:
                    raise OSError(f"GET {self.config.server}{path}: {_said(exc)}") from exc
                finally:
                    response.close()
            try:
                body = response.read()
            except httpx.HTTPError:
                body = b""
            response.close()
            if response.status_code == 401 and attempt == 1 and self.config.token_file:
                with self._lock:
                    self._stamp = None  # re-read the token file, then try once more
                continue
            raise ApiError(response.status_code, _reason(body, response.reason_phrase), path)
        raise AssertionError("unreachable")  # pragma: no cover

    def _headers(self) -> dict[str, str]:
        path = self.config.token_file
        if path:
            try:
                st = os.stat(path)
                stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
                with self._lock:
                    if stamp != self._stamp:
                        with open(path, encoding="utf-8") as f:
                            self._token = f.read().strip()
                        self._stamp = stamp
            except OSError:
                pass  # keep the last token; the API's 401 will say the rest
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}


class _Stream:
    """A watch response: one decoded event per line, as it arrives."""

    def __init__(self, response: Any, path: str, httpx: Any) -> None:
        self._response = response
        self._path = path
        self._httpx = httpx
        self._closed = False

    def __iter__(self) -> Iterator[Mapping[str, Any]]:
        try:
            for line in self._response.iter_lines():
                if not line.strip():
                    continue
                try:
                    event = json.loads(line)
                except ValueError as exc:
                    raise OSError(f"watch {self._path}: undecodable line ({exc})") from exc
                if isinstance(event, dict):
                    yield event
        except self._httpx.HTTPError as exc:
            if not self._closed:
                raise OSError(f"watch {self._path} broke: {exc}") from exc

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._response.close()


class Collection:
    """A :class:`~kuberesolver.kube.reflector.Transport` for one collection path."""

    def __init__(
        self,
        api: HttpApi,
        path: str,
        what: str,
        *,
        params: Mapping[str, str] | None = None,
        watch_timeout_s: int = 240,
    ) -> None:
        self.api = api
        self.path = path
        self.what = what
        self.params = dict(params or {})
        self.watch_timeout_s = watch_timeout_s

    def list(self) -> Listed:
        body = self.api.get_json(self.path, self.params)
        items = [item for item in body.get("items") or [] if isinstance(item, Mapping)]
        meta = body.get("metadata")
        rv = str(meta.get("resourceVersion") or "") if isinstance(meta, Mapping) else ""
        return Listed(items, rv)

    def watch(self, resource_version: str) -> _Stream:
        params = {
            **self.params,
            "watch": "true",
            "allowWatchBookmarks": "true",
            "resourceVersion": resource_version,
            "timeoutSeconds": str(self.watch_timeout_s),
        }
        return self.api.stream(self.path, params, self.watch_timeout_s + 30.0)


def _said(exc: Exception) -> str:
    """An httpx error as a log line reads it (a timeout's own text is only "timed out")."""
    return f"{type(exc).__name__}: {exc}"


def _reason(body: bytes, fallback: str) -> str:
    try:
        status = json.loads(body)
    except ValueError:
        return fallback
    if isinstance(status, dict) and status.get("message"):
        return str(status["message"])
    return fallback
