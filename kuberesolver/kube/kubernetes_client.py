"""A :class:`~kuberesolver.kube.client.K8sClient` on the ``kubernetes`` client library.

Imported only by the factories in :mod:`kuberesolver.kube.client` (the
``[direct]`` extra). Only the generated API's public calls are used, with
``_preload_content=False`` so that objects stay plain JSON (no model
classes) and a watch is read as it arrives, line by line.

Deadlines: a GET or LIST gives up after ``timeout_s`` in all (connecting and
reading; urllib3's hidden retries are off, :func:`~kuberesolver.kube.kubeconfig.no_hidden_retries`);
a watch after :data:`~kuberesolver.kube.kubeconfig.CONNECT_TIMEOUT_S` to connect and
``timeout_s`` of silence.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import urllib3
from kubernetes import client as k8s
from kubernetes import config

from kuberesolver.core.endpointslices import SERVICE_NAME_LABEL
from kuberesolver.kube.client import ApiError, json_object
from kuberesolver.kube.kubeconfig import CONNECT_TIMEOUT_S, no_hidden_retries

__all__ = ["KubernetesClient"]

log = logging.getLogger("kuberesolver.direct")

T = TypeVar("T")


class _TokenFile:
    """A bearer token file, re-read when it changes on disk (kubelet swaps it atomically)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self._lock = threading.Lock()
        self.reads = 0

    def refresh(self, configuration: Any) -> None:
        """``refresh_api_key_hook``: runs before every request; a stat, a read only on change."""
        try:
            st = os.stat(self.path)
        except OSError as exc:
            log.warning(
                "cannot stat the token file %s (%s); keeping the last token", self.path, exc
            )
            return
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        with self._lock:
            if stamp == self._stamp:
                return
            try:
                with open(self.path, encoding="utf-8") as f:
                    token = f.read().strip()
            except OSError as exc:
                log.warning("cannot read the token file %s (%s)", self.path, exc)
                return
            if self._stamp is not None:
                log.info("the token file %s changed: using the new token", self.path)
            self._stamp = stamp
            self.reads += 1
            configuration.api_key["authorization"] = f"Bearer {token}"

    def forget(self) -> None:
        """Make the next request re-read the file (after a 401)."""
        with self._lock:
            self._stamp = None


class _Stream:
    """A watch response read as it arrives: one decoded event per line."""

    def __init__(self, response: Any, path: str) -> None:
        self._response = response
        self._path = path
        self._closed = False

    def __iter__(self) -> Iterator[Mapping[str, Any]]:
        buffer = b""
        try:
            for chunk in self._response.stream(65536, decode_content=True):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        yield _decode_event(line, self._path)
        except Exception as exc:
            if self._closed:
                return
            if isinstance(exc, OSError):
                raise
            raise OSError(f"watch {self._path} broke: {exc}") from exc
        if buffer.strip() and not self._closed:
            yield _decode_event(buffer, self._path)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        shutdown = getattr(self._response, "shutdown", None)
        try:
            if shutdown is not None:
                shutdown()  # unblocks a read in progress on another thread
            self._response.close()
            self._response.release_conn()
        except Exception as exc:  # closing is best effort
            log.debug("closing watch %s: %s", self._path, exc)


def _decode_event(line: bytes, path: str) -> Mapping[str, Any]:
    try:
        event = json.loads(line)
    except ValueError as exc:
        raise OSError(f"watch {path}: undecodable line ({exc})") from exc
    if not isinstance(event, dict) or not isinstance(event.get("object"), dict):
        raise OSError(f"watch {path}: not a watch event: {line[:200]!r}")
    return event


class KubernetesClient:
    """Direct mode's API calls, on ``kubernetes.client``'s generated API."""

    def __init__(
        self,
        host: str,
        *,
        token_file: str | None = None,
        ca_file: str | None = None,
        configuration: Any = None,
    ) -> None:
        if configuration is None:
            configuration = k8s.Configuration()
            configuration.host = host
        if ca_file:
            configuration.ssl_ca_cert = ca_file
        self.token_file = _TokenFile(token_file) if token_file else None
        if self.token_file is not None:
            self.token_file.refresh(configuration)
            configuration.refresh_api_key_hook = self.token_file.refresh
        self._host = host
        self._api: Any = k8s.ApiClient(no_hidden_retries(configuration))
        self._core = k8s.CoreV1Api(self._api)
        self._discovery = k8s.DiscoveryV1Api(self._api)
        self._closed = False

    @classmethod
    def from_kubeconfig(cls, path: str, *, context: str | None = None) -> KubernetesClient:
        """A client on the credentials of kubeconfig ``path`` (``os.pathsep``-separated
        files are merged, as kubectl merges ``$KUBECONFIG``), its current context or
        ``context``. Exec plugins and token files are the ``kubernetes`` library's to refresh.
        """
        configuration: Any = k8s.Configuration()
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=path,
            context=context,
            client_configuration=configuration,
            persist_config=False,
        )
        return cls(str(configuration.host), configuration=configuration)

    @property
    def host(self) -> str:
        return self._host

    def get_service(
        self, namespace: str, name: str, *, timeout_s: float = 30.0
    ) -> Mapping[str, Any]:
        path = f"/api/v1/namespaces/{namespace}/services/{name}"
        return self._json(
            path,
            lambda: self._core.read_namespaced_service(
                name, namespace, _preload_content=False, _request_timeout=timeout_s
            ),
        )

    def list_endpoint_slices(
        self, namespace: str, service: str, *, timeout_s: float = 30.0
    ) -> Mapping[str, Any]:
        path = f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices"
        return self._json(
            path,
            lambda: self._discovery.list_namespaced_endpoint_slice(
                namespace,
                label_selector=f"{SERVICE_NAME_LABEL}={service}",
                _preload_content=False,
                _request_timeout=timeout_s,
            ),
        )

    def watch_endpoint_slices(
        self,
        namespace: str,
        service: str,
        resource_version: str,
        *,
        timeout_s: float = 30.0,
        server_timeout_s: int = 300,
    ) -> _Stream:
        path = f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices?watch=true"
        response = self._call(
            path,
            lambda: self._discovery.list_namespaced_endpoint_slice(
                namespace,
                label_selector=f"{SERVICE_NAME_LABEL}={service}",
                watch=True,
                allow_watch_bookmarks=True,
                resource_version=resource_version,
                timeout_seconds=server_timeout_s,
                _preload_content=False,
                _request_timeout=(min(CONNECT_TIMEOUT_S, timeout_s), timeout_s),
            ),
        )
        return _Stream(response, path)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._api.close()

    def _json(self, path: str, call: Callable[[], Any]) -> Mapping[str, Any]:
        response = self._call(path, call)
        try:
            data = response.data
        finally:
            response.release_conn()
        return json_object(data, path)

    def _call(self, path: str, call: Callable[[], T]) -> T:
        """Run ``call``; a 401 re-reads the token and tries once more; errors become ApiError."""
        for attempt in (1, 2):
            try:
                return call()
            except k8s.ApiException as exc:
                status = int(exc.status or 0)
                if status == 401 and attempt == 1 and self.token_file is not None:
                    self.token_file.forget()
                    continue
                raise ApiError(status, _reason(exc), path) from None
            except urllib3.exceptions.HTTPError as exc:  # no answer: refused, reset, timed out
                raise OSError(f"{path}: {exc}") from exc
        raise AssertionError("unreachable")  # pragma: no cover


def _reason(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if body:
        try:
            status = json.loads(body)
            if isinstance(status, dict) and status.get("message"):
                return str(status["message"])
        except ValueError:
            pass
    return str(getattr(exc, "reason", "") or exc)
