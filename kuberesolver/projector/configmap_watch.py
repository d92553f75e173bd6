"""Watch ONE ConfigMap and project it into a directory with kubelet's atomic layout.

It needs only ``get``, ``list`` and ``watch`` on that one ConfigMap (a Role
with ``resourceNames: [<name>]``): every request names it with the field
selector ``metadata.name=<name>``.

Behaviour:

- each ADDED or MODIFIED version is written with
  :func:`~kuberesolver.projector.atomic_writer.write_atomic` (nothing is
  written when the content is the same);
- a deleted or absent ConfigMap leaves the directory as it was (as kubelet
  does): never an empty projection because something went missing;
- errors (403, connection refused, an expired resourceVersion, no answer) are
  logged, one line naming the API host, and retried with backoff, re-listing
  from scratch; the last good files stay;
- deadlines: a list gives up after ``request_timeout_s`` (30 s, connecting and
  reading together: the HTTP client's hidden retries are off, see
  :mod:`kuberesolver.kubeconfig`); a watch after 10 s to connect and
  ``watch_timeout_s`` + 30 s of silence;
- nothing it reads stops it: an event it cannot project (or any other
  error) is logged once with its traceback, counted in ``errors``, and
  skipped; the last good files stay;
- ``lag_s`` > 0 writes each version after the first only that long after it
  was seen, as kubelet's slow refresh of a mounted ConfigMap would (kubelet
  mounts the current version when the pod starts; see :mod:`.lag`).
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import threading
import traceback
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from kuberesolver.kubeconfig import CONNECT_TIMEOUT_S, REQUEST_TIMEOUT_S
from kuberesolver.projector.atomic_writer import write_atomic
from kuberesolver.projector.lag import Lagged
from kuberesolver.retry import backoff_s

__all__ = ["ConfigMapProjector", "files_of"]

_log = logging.getLogger("kuberesolver.projector")


def files_of(configmap: Mapping[str, Any]) -> dict[str, bytes]:
    """The files a ConfigMap volume holds: ``data`` as UTF-8, ``binaryData`` decoded."""
    files = {str(k): str(v).encode("utf-8") for k, v in (configmap.get("data") or {}).items()}
    for k, v in (configmap.get("binaryData") or {}).items():
        files[str(k)] = base64.b64decode(v)
    return files


class ConfigMapProjector:
    """Keeps ``directory`` equal to ConfigMap ``namespace/name``.

    ``api`` is a ``kubernetes.client.ApiClient``. :meth:`run` blocks until
    :meth:`stop` is called (from another thread or a signal handler); both
    are idempotent.
    """

    def __init__(
        self,
        api: Any,
        namespace: str,
        name: str,
        directory: str | Path,
        *,
        watch_timeout_s: int = 240,
        on_write: Callable[[int], None] | None = None,
        lag_s: float = 0.0,
        request_timeout_s: float = REQUEST_TIMEOUT_S,
    ) -> None:
        from kubernetes import client

        self._core = client.CoreV1Api(api)
        self.host = str(api.configuration.host)
        self.request_timeout_s = request_timeout_s
        self.namespace = namespace
        self.name = name
        self.directory = Path(directory)
        self.watch_timeout_s = watch_timeout_s
        self.on_write = on_write
        self.writes = 0
        self.errors = 0
        """Events or requests that failed (each logged once, with its traceback)."""
        self._problem: str | None = None
        self._stop = threading.Event()
        self._response: Any = None
        self._lagged: Lagged[Mapping[str, Any]] | None = (
            Lagged(self._write, lag_s) if lag_s > 0 else None
        )

    def stop(self) -> None:
        self._stop.set()
        if self._lagged is not None:
            self._lagged.stop()
        response = self._response
        if response is not None:
            # Shut the socket down for reading: the blocked read ends at once. close()
            # would wait for the lock that a read in another thread holds.
            with contextlib.suppress(Exception):
                response.shutdown()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                version = self._list()
                failures = 0
                self._watch(version)
            except Exception as exc:
                if self._stop.is_set():
                    break
                failures += 1
                delay = backoff_s(failures)
                self.errors += 1
                _log.warning(
                    "ConfigMap %s/%s from %s: %s; retrying in %.1f s (the last files stay)",
                    self.namespace, self.name, self.host, _describe(exc), delay,
                )  # fmt: skip
                self._stop.wait(delay)

    def run_once(self) -> bool:
        """Project the current ConfigMap once (without lag); whether it existed."""
        body = self._request(watch=False)
        items = body.get("items") or []
        if items:
            self._write(items[0])
        return bool(items)

    # -- internals --------------------------------------------------------------------------

    def _request(self, watch: bool, resource_version: str | None = None) -> Any:
        kwargs: dict[str, Any] = {
            "field_selector": f"metadata.name={self.name}",
            "_preload_content": False,
        }
        if watch:
            kwargs.update(
                watch=True,
                allow_watch_bookmarks=True,
                timeout_seconds=self.watch_timeout_s,
                resource_version=resource_version,
                _request_timeout=(CONNECT_TIMEOUT_S, self.watch_timeout_s + 30),
            )
            return self._core.list_namespaced_config_map(self.namespace, **kwargs)
        kwargs["_request_timeout"] = self.request_timeout_s
        resp: Any = self._core.list_namespaced_config_map(self.namespace, **kwargs)
        return json.loads(resp.data)

    def _list(self) -> str:
        body = self._request(watch=False)
        items = body.get("items") or []
        if items:
            self._project(items[0])
        else:
            _log.warning(
                "ConfigMap %s/%s does not exist (yet); waiting for it", self.namespace, self.name
            )
        return str((body.get("metadata") or {}).get("resourceVersion") or "")

    def _watch(self, version: str) -> None:
        response = self._request(watch=True, resource_version=version)
        self._response = response
        try:
            for event in _events(response):
                if self._stop.is_set():
                    return
                if event.get("type") == "ERROR":
                    # Typically 410 Gone: the version expired. Re-list.
                    obj = event.get("object")
                    message = obj.get("message") if isinstance(obj, Mapping) else None
                    raise RuntimeError(f"watch error: {message or obj}")
                self.handle(event)
        finally:
            self._response = None
            response.release_conn()

    def handle(self, event: Mapping[str, Any]) -> None:
        """Apply one watch event. Never raises: a bad event is logged once and counted."""
        try:
            kind = event.get("type")
            obj = event.get("object") or {}
            if kind in ("ADDED", "MODIFIED"):
                self._project(obj)
                self._problem = None
            elif kind == "DELETED":
                _log.warning(
                    "ConfigMap %s/%s was deleted; keeping the last files", self.namespace, self.name
                )
        except Exception as exc:
            self.errors += 1
            problem = f"{type(exc).__name__}: {exc}"
            if problem != self._problem:
                self._problem = problem
                _log.error(
                    "ConfigMap %s/%s: cannot project an event (%s); the last files stay\n%s",
                    self.namespace,
                    self.name,
                    problem,
                    "".join(traceback.format_exception(exc)).rstrip(),
                )

    def _project(self, configmap: Mapping[str, Any]) -> None:
        if self._lagged is not None and self.writes:
            self._lagged.submit(configmap)
        else:
            self._write(configmap)

    def _write(self, configmap: Mapping[str, Any]) -> None:
        if write_atomic(self.directory, files_of(configmap)):
            self.writes += 1
            meta = configmap.get("metadata") or {}
            _log.info(
                "projected ConfigMap %s/%s (resourceVersion %s) into %s",
                self.namespace, self.name, meta.get("resourceVersion"), self.directory,
            )  # fmt: skip
            if self.on_write is not None:
                self.on_write(self.writes)


def _events(response: Any) -> Iterator[dict[str, Any]]:
    from kubernetes.watch.watch import iter_resp_lines

    for line in iter_resp_lines(response):  # type: ignore[no-untyped-call]
        try:
            event = json.loads(line)
        except (ValueError, RecursionError):
            _log.error("skipping a watch event that is not JSON: %.200r", line)
            continue
        if isinstance(event, dict):
            yield event


def _describe(exc: BaseException) -> str:
    status = getattr(exc, "status", None)
    if status:
        return f"{type(exc).__name__} {status} {getattr(exc, 'reason', '')}".strip()
    return f"{type(exc).__name__}: {exc}"
