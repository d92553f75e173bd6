"""Every GrpcTarget over xDS from this replica's own watches (off by default).

Every replica runs it, leader or not: the ADS server
(:class:`~kuberesolver.xds.ads_aio.AdsServer`) serves an
:class:`~kuberesolver.xds.store.XdsStore` that this feed keeps current
from the replica's :class:`~kuberesolver.operator.runtime.informer.ServiceStore` and
the GrpcTarget events kopf delivers. Only the leader writes ConfigMaps; a
failover changes nothing for an xDS client, whose stream stays on its replica.

Each target's snapshot comes from the same pure
:func:`~kuberesolver.operator.logic.reconcile.plan` as its ConfigMap, with one
difference: an endpoint's conditions are read from its Pod where the Pod is
newer than the slice (:mod:`~kuberesolver.operator.logic.pod_readiness`;
``KUBERESOLVER_XDS_POD_READINESS``), so a Pod turning Ready is served before
kube-controller-manager has rewritten the slice. A Service or
EndpointSlice change, or a new GrpcTarget version, marks the targets it
concerns; they are planned and put into the store once per turn of the event
loop (a burst of events already queued is one put, nothing waits on a timer).
An invalid spec or an unknown port keeps the last good resources (or none);
a missing Service serves an empty CLA, like the ConfigMap. A deleted
GrpcTarget is removed at once.

Half a world is not the truth: nothing is planned before the first list of
Services and EndpointSlices, and the server answers no stream until every
GrpcTarget that existed at start (listed once) has come through kopf's events,
or ``ready_timeout_s`` has passed. A client that reconnects to a replica that
has just started is answered late, never told that its target does not exist.

With ``KUBERESOLVER_XDS_AUTH=token`` a client sees only the targets whose
ConfigMap its ServiceAccount may ``get`` (:mod:`.auth`); the others are absent.

Settings: ``KUBERESOLVER_XDS_*`` (:mod:`kuberesolver.xds.settings`);
``KUBERESOLVER_XDS_ADDRESS`` unset means no server, and grpc is never imported.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from kuberesolver.core.backoff import backoff_s
from kuberesolver.operator.logic.reconcile import InvalidSpec, PortNotFound, Published, plan
from kuberesolver.operator.logic.spec import GROUP, PLURAL, VERSION, plain
from kuberesolver.operator.runtime.hub import ServiceKey, TargetKey
from kuberesolver.operator.runtime.informer import ServiceStore
from kuberesolver.xds.settings import ENV, XdsSettings

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from kuberesolver.xds.ads_aio import AdsServer
    from kuberesolver.xds.store import XdsStore

__all__ = ["XdsFeed"]

_RELIST_S: Final = 2.0
"""How often the start-up wait lists the GrpcTargets again (some may be gone by then)."""

_log = logging.getLogger("kuberesolver.operator.xds")

_SYNCED = ("services", "endpointslices")


@dataclass
class _Target:
    uid: str
    spec: Mapping[str, Any]
    service: ServiceKey
    published: Published | None = None
    """What this replica last put (the revision baseline of the next snapshot)."""
    configmap: str = ""
    """The ConfigMap its readers may ``get`` (the name the last good spec gave)."""
    problem: str = ""
    """The last reason it could not be planned (logged once)."""
    timeouts_noted: bool = False
    """Whether the note that its method timeouts are withheld from some clients was logged."""


class XdsFeed:
    """Keeps :attr:`store` equal to what :func:`plan` makes of every known GrpcTarget."""

    def __init__(
        self,
        settings: XdsSettings,
        services: ServiceStore,
        registry: CollectorRegistry | None = None,
        *,
        list_targets: Callable[[], Awaitable[list[TargetKey]]] | None = None,
        ready_timeout_s: float = 30.0,
        on_denied: Callable[[str], None] | None = None,
    ) -> None:
        from kuberesolver.xds.ads_aio import AdsServer
        from kuberesolver.xds.metrics import XdsMetrics
        from kuberesolver.xds.store import XdsStore

        self.settings = settings
        self.services = services
        self.store: XdsStore = XdsStore(settings.authority)
        self.server: AdsServer = AdsServer(
            self.store,
            metrics=XdsMetrics(registry),
            method_timeouts=settings.method_timeouts,
        )
        self._targets: dict[TargetKey, _Target] = {}
        self._followers: dict[ServiceKey, set[TargetKey]] = {}
        self._dirty: set[TargetKey] = set()
        self._flush: asyncio.Handle | None = None
        self._synced = False
        self._sync_task: asyncio.Task[None] | None = None
        self._api: Any = None
        self._list_targets = list_targets or self._list_from_api
        self._ready_timeout_s = ready_timeout_s
        self._on_denied = on_denied
        self._awaited: set[TargetKey] | None = None
        """GrpcTargets listed at start and not yet seen through kopf (``None``: not listed)."""
        self._seen: set[TargetKey] = set()
        self._all_seen = asyncio.Event()
        self.puts = 0
        """Targets put into the store (for tests and debugging)."""

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def listening(self) -> bool:
        """Whether the ADS server listens and answers (after the first sync)."""
        return self.server.serving

    async def start(self) -> int:
        """Listen (``OSError`` if the address is taken); returns the port."""
        credentials = None
        if self.settings.tls:
            from kuberesolver.xds.ads_aio import server_credentials

            credentials = server_credentials(
                self.settings.cert_file,
                self.settings.key_file,
                self.settings.client_ca_file or None,
            )
        if self.settings.auth == "token":
            from kuberesolver.operator.xds.auth import KubeAuthorizer

            self.server.authorizer = KubeAuthorizer(
                self._client(), self.configmap, self.settings.audience, on_denied=self._on_denied
            )
        self.server.hold()
        port = await self.server.start(self.settings.address, credentials)
        self._sync_task = asyncio.create_task(self._first_sync(), name="kuberesolver-xds-sync")
        _log.info(
            "serving xDS on %s (port %d, %s, auth %s), authority %s: xds://%s/<target>.<namespace>",
            self.settings.address,
            port,
            "mutual TLS"
            if self.settings.client_ca_file
            else "TLS"
            if self.settings.tls
            else "plaintext",
            self.settings.auth,
            self.settings.authority,
            self.settings.authority,
        )
        return port

    async def stop(self, grace_s: float = 5.0) -> None:
        if self._sync_task is not None:
            self._sync_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sync_task
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        await self.server.stop(grace_s)
        if self._api is not None:
            self._api.close()

    def _client(self) -> Any:
        if self._api is None:
            from kuberesolver.kube.kubeconfig import load_client

            self._api, _ = load_client(pool_maxsize=4)
        return self._api

    async def _list_from_api(self) -> list[TargetKey]:
        from kubernetes import client

        api: Any = client.CustomObjectsApi(self._client())
        pages: list[Mapping[str, Any]] = []
        for namespace in self.services.namespaces:  # namespaced mode: never cluster-wide
            pages.append(
                await asyncio.to_thread(
                    api.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    namespace,
                    PLURAL,
                    _request_timeout=30,
                )
            )
        if not self.services.namespaces:
            pages.append(
                await asyncio.to_thread(
                    api.list_cluster_custom_object, GROUP, VERSION, PLURAL, _request_timeout=30
                )
            )
        keys: list[TargetKey] = []
        for listed in pages:
            for item in listed.get("items") or []:
                meta: Mapping[str, Any] = item.get("metadata") or {}
                keys.append((str(meta.get("namespace") or ""), str(meta.get("name") or "")))
        return keys

    async def _first_sync(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._ready_timeout_s
        failures = 0
        while self._awaited is None and loop.time() < deadline:
            try:
                self._awaited = set(await self._list_targets()) - self._seen
            except Exception as exc:  # the API is away: try again, serve at the deadline
                failures += 1
                _log.warning("xDS: listing GrpcTargets failed (%s); retrying", exc)
                await asyncio.sleep(min(backoff_s(failures), max(0.0, deadline - loop.time())))
        if self._awaited is not None and not self._awaited:
            self._all_seen.set()
        while not self._all_seen.is_set() and loop.time() < deadline:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._all_seen.wait(), min(_RELIST_S, max(0.0, deadline - loop.time()))
                )
            if self._awaited and not self._all_seen.is_set():
                # One deleted between the list and kopf's own list never comes: list again.
                with contextlib.suppress(Exception):
                    self._awaited &= set(await self._list_targets())
                if not self._awaited:
                    self._all_seen.set()
        if self._awaited:
            _log.warning(
                "xDS: %d GrpcTargets listed at start not seen after %.0f s; serving anyway",
                len(self._awaited),
                self._ready_timeout_s,
            )
        await self.services.wait_synced(*_SYNCED)
        self._synced = True
        self._dirty.update(self._targets)
        self._put_dirty()
        self.server.release()
        _log.info("xDS: serving %d GrpcTargets", len(self.store.keys()))

    def _saw(self, key: TargetKey) -> None:
        self._seen.add(key)
        if self._awaited is not None:
            self._awaited.discard(key)
            if not self._awaited:
                self._all_seen.set()

    # --- what changes ---------------------------------------------------------------------

    def wake_service(self, service: ServiceKey) -> None:
        """The views of ``service`` changed (the ServiceStore's wake callback)."""
        followers = self._followers.get(service)
        if followers:
            self._mark(followers)

    def observe(self, key: TargetKey, uid: str, body: Mapping[str, Any]) -> None:
        """A GrpcTarget was listed, added or modified."""
        self._saw(key)
        spec = plain(body.get("spec") or {})
        target = self._targets.get(key)
        if target is not None and target.uid == uid and target.spec == spec:
            return  # a status write: nothing to serve differently
        service = (str(spec.get("serviceNamespace") or key[0]), str(spec.get("service") or ""))
        if target is None or target.uid != uid:
            target = _Target(uid, spec, service)
            self._targets[key] = target
        else:
            target.spec = spec
        self._follow(key, target, service)
        self._mark((key,))

    def forget(self, key: TargetKey, uid: str) -> None:
        """A GrpcTarget was deleted: its resources go at once."""
        self._saw(key)
        target = self._targets.get(key)
        if target is None or (uid and target.uid != uid):
            return
        del self._targets[key]
        self._unfollow(key, target.service)
        self._dirty.discard(key)
        self.store.remove(key)

    def configmap(self, key: TargetKey) -> str | None:
        """The ConfigMap whose readers may see ``key`` (``None``: not served)."""
        target = self._targets.get(key)
        return target.configmap or None if target is not None else None

    # --- planning ---------------------------------------------------------------------------

    def _follow(self, key: TargetKey, target: _Target, service: ServiceKey) -> None:
        if target.service != service:
            self._unfollow(key, target.service)
            target.service = service
        self._followers.setdefault(service, set()).add(key)

    def _unfollow(self, key: TargetKey, service: ServiceKey) -> None:
        followers = self._followers.get(service)
        if followers is not None:
            followers.discard(key)
            if not followers:
                del self._followers[service]

    def _mark(self, keys: Any) -> None:
        self._dirty.update(keys)
        if self._synced and self._dirty and self._flush is None:
            self._flush = asyncio.get_running_loop().call_soon(self._put_dirty)

    def _put_dirty(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
        self._flush = None
        dirty, self._dirty = self._dirty, set()
        for key in sorted(dirty):
            target = self._targets.get(key)
            if target is not None:
                try:
                    self._put(key, target)
                except Exception:  # one target's bug must not stop the others
                    _log.exception("%s/%s: not served over xDS", *key)

    def _put(self, key: TargetKey, target: _Target) -> None:
        service, slices = self.services.lookup_live(target.service)
        the_plan = plan(
            key[1],
            key[0],
            target.spec,
            service,
            slices,
            target.published,
            watched=self.services.namespaces,
        )
        if isinstance(the_plan, InvalidSpec | PortNotFound):
            self._problem(key, target, the_plan.message)
            return
        snapshot = the_plan.snapshot
        try:
            self.store.put(key, snapshot)
        except ValueError as exc:
            self._problem(key, target, str(exc))
            return
        target.published = Published(snapshot.revision, snapshot.endpoints)
        target.configmap = the_plan.target.configmap_name or key[1]
        target.problem = ""
        self.puts += 1
        mode = self.settings.method_timeouts
        if not target.timeouts_noted and mode != "all" and self.store.timed(key):
            target.timeouts_noted = True  # once per target: the streams come and go
            _log.warning(
                "%s/%s: xDS: its methodConfig timeouts are not served to %s (%s=%s)",
                key[0],
                key[1],
                "grpc C-core clients (grpcio, C++), which end such calls 1-2 s early, "
                "grpc/grpc#34547; set the deadline on the call there"
                if mode == "auto"
                else "any client",
                ENV["method_timeouts"],
                mode,
            )

    def _problem(self, key: TargetKey, target: _Target, message: str) -> None:
        if message != target.problem:
            kept = "the last good resources stay" if target.published else "nothing is served"
            _log.warning("%s/%s: xDS: %s; %s", key[0], key[1], message, kept)
        target.problem = message
