"""The few API calls the operator makes itself: ConfigMaps, status, Events, its Lease and
the webhook's TLS Secret and CA bundle.

kopf watches; these calls write. Each is a plain HTTP request on a small
thread pool, with JSON in and out (msgspec; no model objects), on the
``kubernetes`` client's own connection pool and with its credentials, the
same as kopf's (:func:`kuberesolver.kube.kubeconfig.load_client`).

Why not the client's generated methods: around each request they validate
the arguments (pydantic), re-apply the kubeconfig to the configuration
(re-reading the proxy variables), rebuild the URL and serialize the body
with :mod:`json`: about a millisecond of CPU per call, as much as the rest of
an EndpointSlice change costs the operator. :class:`Http` sends the same
request on the same urllib3 pool (TLS, client certificates and any proxy as
configured), with the credentials' headers from
``Configuration.auth_settings()`` (which refreshes an expiring token) taken
again every :data:`_AUTH_TTL_S` and after any 401.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final
from urllib.parse import quote, urlencode

import msgspec
import urllib3
from kubernetes import client

from kuberesolver.core.endpointslices import SERVICE_NAME_LABEL
from kuberesolver.kube.kubeconfig import REQUEST_TIMEOUT_S, load_client
from kuberesolver.operator.logic.spec import GROUP, PLURAL, VERSION

__all__ = ["FIELD_MANAGER", "ApiError", "Http", "Kube"]

FIELD_MANAGER: Final = "kuberesolver-operator"
_AUTH_TTL_S: Final = 10.0
_JSON: Final = "application/json"
_MANAGED: Final = {"fieldManager": FIELD_MANAGER}


class ApiError(RuntimeError):
    """An API call that failed; ``status`` is the HTTP status (0 when there was none)."""

    def __init__(self, status: int, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        """The HTTP reason phrase (``"Forbidden"``), when there was an answer."""


class Http:
    """Requests on a ``kubernetes.client.ApiClient``'s pool and credentials (thread-safe)."""

    def __init__(self, api: client.ApiClient) -> None:
        self._config = api.configuration
        self._pool = api.rest_client.pool_manager
        self._host = str(self._config.host).rstrip("/")
        self._base = {str(k): str(v) for k, v in (api.default_headers or {}).items()}
        self._lock = threading.Lock()
        self._auth: dict[str, str] = {}
        self._auth_at = -float("inf")

    def _credentials(self, fresh: bool) -> dict[str, str]:
        with self._lock:
            now = time.monotonic()
            if fresh or now - self._auth_at > _AUTH_TTL_S:
                headers = {}
                for setting in self._config.auth_settings().values():
                    if setting.get("in") == "header" and setting.get("value"):
                        headers[str(setting["key"])] = str(setting["value"])
                self._auth, self._auth_at = headers, now
            return self._auth

    def request(
        self,
        what: str,
        method: str,
        path: str,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = _JSON,
        timeout_s: float = REQUEST_TIMEOUT_S,
    ) -> Any:
        """The decoded JSON answer (``{}`` when empty); :class:`ApiError` for anything else."""
        data = None if body is None else msgspec.json.encode(body)
        resp = self.send(
            what, method, path, query, data, content_type, urllib3.Timeout(total=timeout_s)
        )
        raw = resp.data
        if not raw:
            return {}
        try:
            return msgspec.json.decode(raw)
        except msgspec.DecodeError:
            return json.loads(raw)  # anything else it reads, or its error

    def send(
        self,
        what: str,
        method: str,
        path: str,
        query: Mapping[str, str] | None,
        data: bytes | None,
        content_type: str,
        timeout: urllib3.Timeout,
        *,
        stream: bool = False,
    ) -> urllib3.BaseHTTPResponse:
        """The answer, its body unread when ``stream``; :class:`ApiError` for an error
        status (its body read) or none (status 0). One attempt, and once more after a 401."""
        url = self._host + path + ("?" + urlencode(query) if query else "")
        for attempt in (0, 1):
            headers = {**self._base, **self._credentials(fresh=attempt > 0), "Accept": _JSON}
            if data is not None:
                headers["Content-Type"] = content_type
            try:
                resp = self._pool.request(
                    method,
                    url,
                    body=data,
                    headers=headers,
                    timeout=timeout,
                    retries=False,  # one attempt: the timeout is the deadline
                    preload_content=not stream,
                )
            except Exception as exc:  # connection refused, TLS, timeouts
                raise ApiError(0, f"{what}: {type(exc).__name__}: {exc}") from exc
            if resp.status != 401 or attempt:
                break
            _release(resp)
        if resp.status >= 400:
            _release(resp)
            reason = str(resp.reason or "")
            raise ApiError(resp.status, f"{what}: {resp.status} {reason}", reason)
        return resp


def _release(resp: urllib3.BaseHTTPResponse) -> None:
    """Read what is left of an answer and give its connection back to the pool."""
    resp.drain_conn()
    resp.release_conn()


def _path(*parts: str) -> str:
    return "".join("/" + quote(p, safe="") for p in parts)


def _core(namespace: str, plural: str, name: str = "") -> str:
    return "/api/v1" + _path("namespaces", namespace, plural, *((name,) if name else ()))


def _group(group: str, version: str, namespace: str, plural: str, name: str = "") -> str:
    return f"/apis/{group}/{version}" + _path(
        "namespaces", namespace, plural, *((name,) if name else ())
    )


class Kube:
    """Async wrappers over blocking requests on a thread pool. :meth:`close` is idempotent."""

    def __init__(self, api: client.ApiClient | None = None, workers: int = 4) -> None:
        if api is None:
            api, _ = load_client(pool_maxsize=max(4, workers))
        self._api = api
        self._http = Http(api)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kuberesolver-api")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._api.close()

    async def _call(
        self,
        what: str,
        method: str,
        path: str,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = _JSON,
        timeout_s: float = REQUEST_TIMEOUT_S,
    ) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._pool, self._http.request, what, method, path, query, body, content_type, timeout_s
        )

    async def _read(self, what: str, path: str) -> dict[str, Any] | None:
        """The object at ``path``, or ``None`` if it is absent (404)."""
        try:
            result: dict[str, Any] = await self._call(what, "GET", path)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return result

    async def _create(self, kind: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        meta = body["metadata"]
        what = f"create {kind} {meta['namespace']}/{meta['name']}"
        result: dict[str, Any] = await self._call(what, "POST", path, _MANAGED, body)
        return result

    async def _replace(self, kind: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        meta = body["metadata"]
        what = f"update {kind} {meta['namespace']}/{meta['name']}"
        result: dict[str, Any] = await self._call(what, "PUT", path, _MANAGED, body)
        return result

    async def get_configmap(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._read(
            f"get ConfigMap {namespace}/{name}", _core(namespace, "configmaps", name)
        )

    async def get_service(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._read(
            f"get Service {namespace}/{name}", _core(namespace, "services", name)
        )

    async def list_service_slices(self, namespace: str, service: str) -> list[dict[str, Any]]:
        """The EndpointSlices of one Service (a consistent read, not a cache)."""
        result = await self._call(
            f"list EndpointSlices of {namespace}/{service}",
            "GET",
            _group("discovery.k8s.io", "v1", namespace, "endpointslices"),
            {"labelSelector": f"{SERVICE_NAME_LABEL}={service}"},
        )
        return list(result.get("items") or [])

    async def list_grpctargets(self, namespace: str, timeout_s: float) -> list[dict[str, Any]]:
        """The GrpcTargets of one namespace (a consistent read, not a cache)."""
        result = await self._call(
            f"list GrpcTargets in {namespace}",
            "GET",
            _group(GROUP, VERSION, namespace, PLURAL),
            timeout_s=timeout_s,
        )
        return list(result.get("items") or [])

    async def create_configmap(self, body: dict[str, Any]) -> dict[str, Any]:
        path = _core(body["metadata"]["namespace"], "configmaps")
        return await self._create("ConfigMap", path, body)

    async def replace_configmap(self, body: dict[str, Any]) -> dict[str, Any]:
        """Replace; ``metadata.resourceVersion`` in ``body`` makes it conditional (409 if stale)."""
        meta = body["metadata"]
        return await self._replace(
            "ConfigMap", _core(meta["namespace"], "configmaps", meta["name"]), body
        )

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        await self._call(
            f"patch GrpcTarget {namespace}/{name} status",
            "PATCH",
            _group(GROUP, VERSION, namespace, PLURAL, name) + "/status",
            _MANAGED,
            {"status": status},
            "application/merge-patch+json",
        )

    async def post_event(self, body: dict[str, Any]) -> None:
        meta = body["metadata"]
        await self._call(
            f"create Event in {meta['namespace']}",
            "POST",
            _core(meta["namespace"], "events"),
            None,
            body,
        )

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._read(
            f"get Lease {namespace}/{name}",
            _group("coordination.k8s.io", "v1", namespace, "leases", name),
        )

    async def create_lease(self, body: dict[str, Any]) -> dict[str, Any]:
        path = _group("coordination.k8s.io", "v1", body["metadata"]["namespace"], "leases")
        return await self._create("Lease", path, body)

    async def replace_lease(self, body: dict[str, Any]) -> dict[str, Any]:
        meta = body["metadata"]
        path = _group("coordination.k8s.io", "v1", meta["namespace"], "leases", meta["name"])
        return await self._replace("Lease", path, body)

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._read(f"get Secret {namespace}/{name}", _core(namespace, "secrets", name))

    async def create_secret(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._create("Secret", _core(body["metadata"]["namespace"], "secrets"), body)

    async def replace_secret(self, body: dict[str, Any]) -> dict[str, Any]:
        meta = body["metadata"]
        return await self._replace(
            "Secret", _core(meta["namespace"], "secrets", meta["name"]), body
        )

    async def get_mutating_webhook(self, name: str) -> dict[str, Any] | None:
        return await self._read(f"get MutatingWebhookConfiguration {name}", _MUTATING + _path(name))

    async def patch_mutating_webhook(self, name: str, ops: list[dict[str, Any]]) -> None:
        """A JSON patch (``ops``) on one MutatingWebhookConfiguration."""
        await self._call(
            f"patch MutatingWebhookConfiguration {name}",
            "PATCH",
            _MUTATING + _path(name),
            _MANAGED,
            ops,
            "application/json-patch+json",
        )


_MUTATING: Final = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
