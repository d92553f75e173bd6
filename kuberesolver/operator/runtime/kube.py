"""The few API calls the operator makes itself: ConfigMaps, status, Events, its Lease and
the webhook's TLS Secret and CA bundle.

kopf watches; these calls write. They use the kubernetes client (sync) on a
small thread pool, with raw JSON in and out (no model objects), and the same
credentials as kopf (:func:`kuberesolver.kube.kubeconfig.load_client`).
"""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kuberesolver.core.endpointslices import SERVICE_NAME_LABEL
from kuberesolver.kube.kubeconfig import load_client
from kuberesolver.operator.logic.spec import GROUP, PLURAL, VERSION

__all__ = ["FIELD_MANAGER", "ApiError", "Kube"]

FIELD_MANAGER: Final = "kuberesolver-operator"
_TIMEOUT_S: Final = 30.0


class ApiError(RuntimeError):
    """An API call that failed; ``status`` is the HTTP status (0 when there was none)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Kube:
    """Async wrappers over the sync client. :meth:`close` is idempotent."""

    def __init__(self, api: client.ApiClient | None = None, workers: int = 4) -> None:
        if api is None:
            api, _ = load_client(pool_maxsize=max(4, workers))
        self._api = api
        self._core = client.CoreV1Api(api)
        self._custom = client.CustomObjectsApi(api)
        self._discovery = client.DiscoveryV1Api(api)
        self._leases = client.CoordinationV1Api(api)
        self._admission = client.AdmissionregistrationV1Api(api)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kuberesolver-api")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._api.close()

    async def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()

        def run() -> Any:
            try:
                resp = fn(*args, _preload_content=False, _request_timeout=_TIMEOUT_S, **kwargs)
            except ApiException as exc:
                raise ApiError(int(exc.status or 0), f"{what}: {exc.status} {exc.reason}") from exc
            except Exception as exc:  # connection refused, TLS, timeouts
                raise ApiError(0, f"{what}: {type(exc).__name__}: {exc}") from exc
            status = int(getattr(resp, "status", 200) or 200)
            data = resp.data
            if status >= 400:
                raise ApiError(status, f"{what}: {status} {data[:300]!r}")
            return json.loads(data) if data else {}

        return await loop.run_in_executor(self._pool, run)

    async def _read(self, what: str, fn: Any, *args: Any) -> dict[str, Any] | None:
        """``fn(*args)``'s object, or ``None`` if it is absent (404)."""
        try:
            result: dict[str, Any] = await self._call(what, fn, *args)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return result

    async def _create(self, kind: str, fn: Any, body: dict[str, Any]) -> dict[str, Any]:
        meta = body["metadata"]
        result: dict[str, Any] = await self._call(
            f"create {kind} {meta['namespace']}/{meta['name']}",
            fn,
            meta["namespace"],
            body,
            field_manager=FIELD_MANAGER,
        )
        return result

    async def _replace(self, kind: str, fn: Any, body: dict[str, Any]) -> dict[str, Any]:
        meta = body["metadata"]
        result: dict[str, Any] = await self._call(
            f"update {kind} {meta['namespace']}/{meta['name']}",
            fn,
            meta["name"],
            meta["namespace"],
            body,
            field_manager=FIELD_MANAGER,
        )
        return result

    async def get_configmap(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._read(
            f"get ConfigMap {namespace}/{name}",
            self._core.read_namespaced_config_map,
            name,
            namespace,
        )

    async def get_service(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._read(
            f"get Service {namespace}/{name}", self._core.read_namespaced_service, name, namespace
        )

    async def list_service_slices(self, namespace: str, service: str) -> list[dict[str, Any]]:
        """The EndpointSlices of one Service (a consistent read, not a cache)."""
        result = await self._call(
            f"list EndpointSlices of {namespace}/{service}",
            self._discovery.list_namespaced_endpoint_slice,
            namespace,
            label_selector=f"{SERVICE_NAME_LABEL}={service}",
        )
        return list(result.get("items") or [])

    async def get_grpctarget(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A GrpcTarget read from the API (not from an index), or ``None`` if absent."""
        return await self._read(
            f"get GrpcTarget {namespace}/{name}",
            self._custom.get_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
        )

    async def create_configmap(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._create("ConfigMap", self._core.create_namespaced_config_map, body)

    async def replace_configmap(self, body: dict[str, Any]) -> dict[str, Any]:
        """Replace; ``metadata.resourceVersion`` in ``body`` makes it conditional (409 if stale)."""
        return await self._replace("ConfigMap", self._core.replace_namespaced_config_map, body)

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        await self._call(
            f"patch GrpcTarget {namespace}/{name} status",
            self._custom.patch_namespaced_custom_object_status,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            {"status": status},
            field_manager=FIELD_MANAGER,
            _content_type="application/merge-patch+json",
        )

    async def post_event(self, body: dict[str, Any]) -> None:
        meta = body["metadata"]
        await self._call(
            f"create Event in {meta['namespace']}",
            self._core.create_namespaced_event,
            meta["namespace"],
            body,
        )

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._read(
            f"get Lease {namespace}/{name}", self._leases.read_namespaced_lease, name, namespace
        )

    async def create_lease(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._create("Lease", self._leases.create_namespaced_lease, body)

    async def replace_lease(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._replace("Lease", self._leases.replace_namespaced_lease, body)

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._read(
            f"get Secret {namespace}/{name}", self._core.read_namespaced_secret, name, namespace
        )

    async def create_secret(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._create("Secret", self._core.create_namespaced_secret, body)

    async def replace_secret(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._replace("Secret", self._core.replace_namespaced_secret, body)

    async def get_mutating_webhook(self, name: str) -> dict[str, Any] | None:
        return await self._read(
            f"get MutatingWebhookConfiguration {name}",
            self._admission.read_mutating_webhook_configuration,
            name,
        )

    async def patch_mutating_webhook(self, name: str, ops: list[dict[str, Any]]) -> None:
        """A JSON patch (``ops``) on one MutatingWebhookConfiguration."""
        await self._call(
            f"patch MutatingWebhookConfiguration {name}",
            self._admission.patch_mutating_webhook_configuration,
            name,
            ops,
            field_manager=FIELD_MANAGER,
            _content_type="application/json-patch+json",
        )
