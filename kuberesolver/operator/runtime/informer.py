"""The operator's own watches of Services and EndpointSlices: list, then watch, in a thread each.

Why not kopf indexes: kopf runs every object of a watched resource through
its per-object machinery (a worker task, a 100 ms batch window, cause
detection, and index readiness toggles that wake every waiting handler).
At 1,000 Services and 100,000 endpoints that cost minutes of CPU at start and
hundreds of milliseconds per change. Here each event costs one JSON decode
and one compact view (:mod:`kuberesolver.core.endpointslices`), computed on the
reflector's thread; the event loop only swaps a dict entry and wakes the
targets that follow the Service.

The loop is the shared :class:`kuberesolver.kube.reflector.Reflector` (list,
watch with bookmarks, 410 relist, jittered backoff, skip what cannot be read),
over :class:`~.collection.Collection` (paginated lists and watches on the
operator's own HTTP, :class:`~.kube.Http`), one for each resource across all
namespaces, or in namespaced mode (``KUBERESOLVER_WATCH_NAMESPACES``) one per
watched namespace, so that no call needs a cluster-wide grant. The store then
replaces a namespace's part on its list, and a resource counts as listed once
every namespace has been. A :class:`LoopReflector` runs each on a daemon
thread and hands what it reads to the event loop. A LIST the API refuses (401
or 403: a right missing from the operator's RBAC) is one ERROR line naming the
resource and the right, logged once until it is allowed again;
:attr:`LoopReflector.refused` says so meanwhile.

:class:`ServiceStore` is the state, touched only on the event loop:
:meth:`ServiceStore.lookup` is what a target's reconcile reads.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, TypeAlias

from kubernetes import client

from kuberesolver.core.endpointslices import (
    SERVICE_NAME_LABEL,
    ServiceView,
    SliceView,
    service_view,
    slice_view,
)
from kuberesolver.kube.reflector import Reflector, Transport
from kuberesolver.operator.logic.pod_readiness import PodView, overlay, pod_view
from kuberesolver.operator.logic.slice_decode import decode_slice_event, decode_slice_list
from kuberesolver.operator.logic.spec import GROUP, PLURAL, VERSION
from kuberesolver.operator.runtime.collection import Collection
from kuberesolver.operator.runtime.hub import ServiceKey
from kuberesolver.operator.runtime.kube import Http

__all__ = [
    "GrpcTargetIndex",
    "LoopReflector",
    "ServiceStore",
    "SliceCodec",
    "grpctarget_reflectors",
    "pod_reflectors",
    "service_reflectors",
]

_log = logging.getLogger("kuberesolver.operator")

ObjectKey: TypeAlias = tuple[str, str]
"""``(namespace, name)`` of a watched object."""


class ServiceStore:
    """The compact views of every Service and EndpointSlice; event-loop only.

    ``wake(service_key)`` is called for every Service whose views changed.
    With ``wake_pods``, the store also keeps the Pods' readiness
    (:mod:`~kuberesolver.operator.logic.pod_readiness`, fed by :func:`pod_reflectors`)
    and calls ``wake_pods(service_key)`` for every Service listing a Pod whose
    readiness changed; :meth:`lookup_live` reads the slices with it.
    ``namespaces``: the only namespaces watched (empty: all); each is listed
    apart, and a resource is synced once all of them have been.
    """

    def __init__(
        self,
        wake: Callable[[ServiceKey], object],
        wake_pods: Callable[[ServiceKey], object] | None = None,
        namespaces: Sequence[str] = (),
    ) -> None:
        self._wake = wake
        self._wake_pods = wake_pods
        self.namespaces: tuple[str, ...] = tuple(namespaces)
        self._scopes = frozenset(namespaces) or frozenset({""})
        self._listed: dict[str, set[str]] = {}
        self._services: dict[ServiceKey, ServiceView] = {}
        self._slices: dict[ServiceKey, dict[str, SliceView]] = {}
        self._slice_owner: dict[ObjectKey, ServiceKey] = {}
        self._synced: dict[str, asyncio.Event] = {}
        self._pods: dict[str, dict[str, PodView]] = {}
        """Pod views by namespace, then name (only with ``wake_pods``)."""
        self._listed_in: dict[ObjectKey, dict[ServiceKey, int]] = {}
        """Pod -> the Services whose slices list it (with how many entries)."""

    def lookup(self, key: ServiceKey) -> tuple[ServiceView | None, list[SliceView]]:
        slices = self._slices.get(key)
        return self._services.get(key), [slices[n] for n in sorted(slices)] if slices else []

    def lookup_live(self, key: ServiceKey) -> tuple[ServiceView | None, list[SliceView]]:
        """:meth:`lookup`, with each endpoint's conditions from its Pod where that is newer."""
        service, slices = self.lookup(key)
        pods = self._pods.get(key[0])
        if not pods or not slices:
            return service, slices
        publish = bool(service and service.get("publishNotReadyAddresses"))
        return service, overlay(slices, pods, publish)

    @property
    def tracks_pods(self) -> bool:
        """Whether it keeps the Pods' readiness (it was given ``wake_pods``)."""
        return self._wake_pods is not None

    @property
    def pods(self) -> int:
        return sum(len(p) for p in self._pods.values())

    # --- Pods (readiness only) ----------------------------------------------------------------

    def set_pod(self, key: ObjectKey, view: PodView | None) -> None:
        """Pod ``key`` now has ``view`` (``None``: deleted, or without an IP)."""
        if self._wake_pods is None:
            return
        namespace, name = key
        pods = self._pods.get(namespace)
        before = pods.get(name) if pods else None
        if view is None:
            if before is None:
                return
            assert pods is not None
            del pods[name]
            if not pods:
                del self._pods[namespace]
        else:
            self._pods.setdefault(namespace, {})[name] = view  # its revision, always
            if before is not None and (before.ready, before.deleting, before.ips) == (
                view.ready,
                view.deleting,
                view.ips,
            ):
                return
        for service in self._listed_in.get(key, ()):
            self._wake_pods(service)

    def replace_pods(self, views: Mapping[ObjectKey, PodView], namespace: str = "") -> None:
        """Every Pod (of ``namespace`` only, when given) is now one of ``views``."""
        for ns, pods in list(self._pods.items()):
            if namespace and ns != namespace:
                continue
            for name in [n for n in pods if (ns, n) not in views]:
                self.set_pod((ns, name), None)
        for key, view in views.items():
            self.set_pod(key, view)
        self.mark_synced("pods", namespace)

    def _index(self, service: ServiceKey, view: SliceView | None, step: int) -> None:
        if self._wake_pods is None or view is None:
            return
        for ep in view["endpoints"]:
            if ep["pod"]:
                pod = (service[0], ep["pod"])
                counts = self._listed_in.setdefault(pod, {})
                counts[service] = counts.get(service, 0) + step
                if counts[service] <= 0:
                    del counts[service]
                    if not counts:
                        del self._listed_in[pod]

    def __len__(self) -> int:
        return len(self._services)

    @property
    def endpoint_slices(self) -> int:
        return len(self._slice_owner)

    # --- readiness of the first list --------------------------------------------------------

    def _event(self, resource: str) -> asyncio.Event:
        return self._synced.setdefault(resource, asyncio.Event())

    def watches(self, namespace: str) -> bool:
        """Whether ``namespace`` is watched (always, without namespaces)."""
        return not self.namespaces or namespace in self._scopes

    def mark_synced(self, resource: str, namespace: str = "") -> None:
        """``resource`` was listed in ``namespace`` ("": in all)."""
        listed = self._listed.setdefault(resource, set())
        listed.add(namespace)
        if "" in listed or listed >= self._scopes:
            self._event(resource).set()

    async def wait_synced(self, *resources: str) -> None:
        """Until every named resource has been listed once."""
        for resource in resources:
            await self._event(resource).wait()

    def synced(self, *resources: str) -> bool:
        return all(self._event(r).is_set() for r in resources)

    # --- Services ---------------------------------------------------------------------------

    def set_service(self, key: ServiceKey, view: ServiceView | None) -> None:
        before = self._services.get(key)
        if view is None:
            if before is None:
                return
            del self._services[key]
        elif before == view:
            return
        else:
            self._services[key] = view
        self._wake(key)

    def replace_services(
        self, views: Mapping[ServiceKey, ServiceView], namespace: str = ""
    ) -> None:
        """Every Service (of ``namespace`` only, when given) is now one of ``views``."""
        for key in [k for k in self._services if k not in views and _in(k, namespace)]:
            self.set_service(key, None)
        for key, view in views.items():
            self.set_service(key, view)
        self.mark_synced("services", namespace)

    # --- EndpointSlices ---------------------------------------------------------------------

    def set_slice(self, obj: ObjectKey, service: ServiceKey | None, view: SliceView | None) -> None:
        """Slice ``obj`` now belongs to ``service`` with ``view`` (``None``: deleted)."""
        owner = self._slice_owner.get(obj)
        if owner is not None and (owner != service or view is None):
            slices = self._slices.get(owner, {})
            self._index(owner, slices.pop(obj[1], None), -1)
            if not slices:
                self._slices.pop(owner, None)
            del self._slice_owner[obj]
            self._wake(owner)
        if service is None or view is None:
            return
        slices = self._slices.setdefault(service, {})
        before = slices.get(obj[1])
        if owner == service and _same_slice(before, view):
            return
        self._index(service, before, -1)
        self._index(service, view, +1)
        slices[obj[1]] = view
        self._slice_owner[obj] = service
        self._wake(service)

    def replace_slices(
        self, views: Mapping[ObjectKey, tuple[ServiceKey, SliceView]], namespace: str = ""
    ) -> None:
        """Every EndpointSlice (of ``namespace`` only, when given) is now one of ``views``."""
        for obj in [k for k in self._slice_owner if k not in views and _in(k, namespace)]:
            self.set_slice(obj, None, None)
        for obj, (service, view) in views.items():
            self.set_slice(obj, service, view)
        self.mark_synced("endpointslices", namespace)


def _in(key: ObjectKey, namespace: str) -> bool:
    """Whether ``key`` is in ``namespace`` ("": any)."""
    return not namespace or key[0] == namespace


class GrpcTargetIndex:
    """Every GrpcTarget's ``spec`` as this replica's own watch last saw it; event-loop only.

    The admission webhook's source (:func:`grpctarget_reflectors` keep it):
    its own watch, not kopf's handlers, so it is fresh on every replica.
    """

    def __init__(self, namespaces: Sequence[str] = ()) -> None:
        self._specs: dict[ObjectKey, Mapping[str, Any]] = {}
        self.namespaces: tuple[str, ...] = tuple(namespaces)
        self._scopes = frozenset(namespaces) or frozenset({""})
        self._listed: set[str] = set()
        self.synced = asyncio.Event()
        """Set once the first list is in (of every namespace, in namespaced mode)."""

    def get(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        """GrpcTarget ``namespace/name`` as ``{"spec": ...}``, or ``None`` if it is unknown."""
        spec = self._specs.get((namespace, name))
        return None if spec is None else {"spec": spec}

    def set(self, key: ObjectKey, spec: Mapping[str, Any] | None) -> None:
        if spec is None:
            self._specs.pop(key, None)
        else:
            self._specs[key] = spec

    def watches(self, namespace: str) -> bool:
        """Whether ``namespace`` is watched (always, without namespaces)."""
        return not self.namespaces or namespace in self._scopes

    def replace(self, specs: Mapping[ObjectKey, Mapping[str, Any]], namespace: str = "") -> None:
        """Every GrpcTarget (of ``namespace`` only, when given) is now one of ``specs``."""
        kept = {k: v for k, v in self._specs.items() if namespace and k[0] != namespace}
        self._specs = kept | dict(specs)
        self._listed.add(namespace)
        if "" in self._listed or self._listed >= self._scopes:
            self.synced.set()

    def __len__(self) -> int:
        return len(self._specs)


def grpctarget_reflectors(
    api: client.ApiClient, index: GrpcTargetIndex, loop: asyncio.AbstractEventLoop
) -> list[LoopReflector]:
    """The reflectors that keep ``index`` current (not started; one per namespace of
    ``index.namespaces``, or one for all); they keep only the fields a mount needs."""
    http = Http(api)

    def decode(obj: Mapping[str, Any]) -> tuple[ObjectKey, dict[str, Any]]:
        spec = obj.get("spec") or {}
        if not isinstance(spec, Mapping):
            raise ValueError("spec is not an object")
        kept = {k: spec[k] for k in ("service", "serviceNamespace", "configMapName") if k in spec}
        return _key(obj), kept

    def event(kind: str, item: tuple[ObjectKey, dict[str, Any]]) -> None:
        key, spec = item
        index.set(key, None if kind == "DELETED" else spec)

    def reflector(namespace: str) -> LoopReflector:
        def listed(items: list[tuple[ObjectKey, dict[str, Any]]]) -> None:
            index.replace(dict(items), namespace)

        return LoopReflector(
            _collection(http, f"/apis/{GROUP}/{VERSION}", PLURAL, namespace),
            loop=loop,
            on_list=listed,
            on_event=event,
            decode=decode,
        )

    return [reflector(ns) for ns in index.namespaces or ("",)]


def _named(resource: str, namespace: str) -> str:
    return f"{resource} in {namespace}" if namespace else resource


def _same_slice(before: SliceView | None, view: SliceView) -> bool:
    """Whether two views of a slice are equal; a new ``resourceVersion`` settles it at once."""
    if before is None or before.get("revision") != view.get("revision"):
        return False
    return before == view


def _key(obj: Mapping[str, Any]) -> ObjectKey:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def _service_of(obj: Mapping[str, Any]) -> ServiceKey | None:
    meta = obj.get("metadata") or {}
    service = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
    return (str(meta.get("namespace") or ""), str(service)) if service else None


class LoopReflector:
    """A :class:`~kuberesolver.kube.reflector.Reflector` on a daemon thread whose
    ``on_list(items)`` and ``on_event(type, obj)`` run on ``loop``
    (``call_soon_threadsafe``), with objects already decoded on the thread."""

    def __init__(
        self,
        transport: Transport,
        *,
        loop: asyncio.AbstractEventLoop,
        on_list: Callable[[list[Any]], None],
        on_event: Callable[[str, Any], None],
        decode: Callable[[Mapping[str, Any]], Any],
        refused_hint: str = "",
    ) -> None:
        plural = transport.what.split()[0]
        self.reflector: Reflector[Any] = Reflector(
            transport,
            decode,
            lambda items: loop.call_soon_threadsafe(on_list, items),
            lambda kind, obj: loop.call_soon_threadsafe(on_event, kind, obj),
            log=_log,
            refused_hint=refused_hint
            or f"grant list and watch on {plural} to the operator's ServiceAccount",
        )
        self.name = transport.what
        self._thread = threading.Thread(
            target=self.reflector.run, name=f"reflector-{self.name}", daemon=True
        )

    @property
    def lists(self) -> int:
        return self.reflector.lists

    @property
    def refused(self) -> str | None:
        """The API's refusal of the last LIST (``"403 Forbidden"``), until one is allowed."""
        return self.reflector.refused

    @property
    def errors(self) -> int:
        """Failed calls and objects skipped."""
        return self.reflector.failures + self.reflector.skipped

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end (a daemon: never waited on). Idempotent, and quick: the
        watch's socket is shut down, never closed from here (:class:`~.collection.Collection`)."""
        self.reflector.stop()


class SliceCodec:
    """:class:`~.collection.FastCodec` for EndpointSlices (:mod:`.slice_decode`): what
    ``decode_slice`` makes."""

    def event(self, line: bytes) -> tuple[str, str, Any] | None:
        got = decode_slice_event(line)
        if got is None:
            return None
        kind, version, key, service, view = got
        return kind, version, (key, service, view)

    def page(self, data: bytes) -> tuple[list[Any], str, str] | None:
        return decode_slice_list(data)


def service_reflectors(
    api: client.ApiClient, store: ServiceStore, loop: asyncio.AbstractEventLoop
) -> list[LoopReflector]:
    """The reflectors that keep ``store`` current (not started): Services and
    EndpointSlices, across all namespaces or one of each per ``store.namespaces``."""
    http = Http(api)

    def decode_service(obj: Mapping[str, Any]) -> tuple[ObjectKey, ServiceView]:
        return _key(obj), service_view(obj)

    def decode_slice(
        obj: Mapping[str, Any],
    ) -> tuple[ObjectKey, ServiceKey | None, SliceView]:
        return _key(obj), _service_of(obj), slice_view(obj)

    def service_event(kind: str, item: tuple[ObjectKey, ServiceView]) -> None:
        key, view = item
        store.set_service(key, None if kind == "DELETED" else view)

    def slice_event(kind: str, item: tuple[ObjectKey, ServiceKey | None, SliceView]) -> None:
        key, service, view = item
        store.set_slice(key, service, None if kind == "DELETED" else view)

    def reflectors(namespace: str) -> list[LoopReflector]:
        def services_listed(items: list[tuple[ObjectKey, ServiceView]]) -> None:
            store.replace_services(dict(items), namespace)

        def slices_listed(items: list[tuple[ObjectKey, ServiceKey | None, SliceView]]) -> None:
            store.replace_slices({k: (s, v) for k, s, v in items if s is not None}, namespace)

        return [
            LoopReflector(
                _collection(http, "/api/v1", "services", namespace),
                loop=loop,
                on_list=services_listed,
                on_event=service_event,
                decode=decode_service,
            ),
            LoopReflector(
                _collection(
                    http,
                    "/apis/discovery.k8s.io/v1",
                    "endpointslices",
                    namespace,
                    label_selector=SERVICE_NAME_LABEL,
                    fast=SliceCodec(),
                ),
                loop=loop,
                on_list=slices_listed,
                on_event=slice_event,
                decode=decode_slice,
            ),
        ]

    return [r for ns in store.namespaces or ("",) for r in reflectors(ns)]


PODS_REFUSED_HINT: Final = (
    "grant list and watch on pods to the operator's ServiceAccount (the chart does with "
    "xds.podReadiness), or set KUBERESOLVER_XDS_POD_READINESS=false; until then the xDS "
    "feed follows the EndpointSlices alone, and everything else is served as before"
)
"""What a refused Pod watch costs: only the xDS feed's early readiness (Pods are optional)."""


def pod_reflectors(
    api: client.ApiClient, store: ServiceStore, loop: asyncio.AbstractEventLoop
) -> list[LoopReflector]:
    """The reflectors that keep the Pods' readiness in ``store`` (not started; one per
    namespace of ``store.namespaces``, or one for all); Pods without an IP are in no
    slice and are dropped on their thread."""
    http = Http(api)

    def decode_pod(obj: Mapping[str, Any]) -> tuple[ObjectKey, PodView | None]:
        return _key(obj), pod_view(obj)

    def pod_event(kind: str, item: tuple[ObjectKey, PodView | None]) -> None:
        key, view = item
        store.set_pod(key, None if kind == "DELETED" else view)

    def reflector(namespace: str) -> LoopReflector:
        def pods_listed(items: list[tuple[ObjectKey, PodView | None]]) -> None:
            store.replace_pods({k: v for k, v in items if v is not None}, namespace)

        return LoopReflector(
            _collection(http, "/api/v1", "pods", namespace),
            loop=loop,
            on_list=pods_listed,
            on_event=pod_event,
            decode=decode_pod,
            refused_hint=PODS_REFUSED_HINT,
        )

    return [reflector(ns) for ns in store.namespaces or ("",)]


def _collection(
    http: Http,
    prefix: str,
    plural: str,
    namespace: str,
    *,
    label_selector: str = "",
    fast: SliceCodec | None = None,
) -> Collection:
    """``plural`` under ``prefix`` (``/api/v1``, ``/apis/<group>/<version>``), in
    ``namespace``, or across all namespaces when it is ""."""
    scope = f"/namespaces/{namespace}" if namespace else ""
    return Collection(
        http, f"{prefix}{scope}/{plural}", _named(plural, namespace),
        label_selector=label_selector, fast=fast,
    )  # fmt: skip
