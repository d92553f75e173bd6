"""What the handlers share, in one object: created at startup, closed at cleanup.

- :class:`~kuberesolver.operator.runtime.informer.ServiceStore`: every Service and
  EndpointSlice, as compact views kept by this replica's own watches
  (:func:`~kuberesolver.operator.runtime.informer.service_reflectors`), for the loops to read.
- :class:`~kuberesolver.operator.runtime.targets.Targets`: the known GrpcTargets and
  their loops.
- :class:`~kuberesolver.operator.runtime.leader.LeaderElector`: the Lease; the loops
  run only while this replica holds it.
- the renderer of templates (:data:`~kuberesolver.operator.logic.reconcile.Renderer`).
- :class:`~kuberesolver.operator.xds.feed.XdsFeed` (``KUBERESOLVER_XDS_ADDRESS``
  set): the ADS server every replica runs, fed by the same watches and, unless
  ``KUBERESOLVER_XDS_POD_READINESS=false``, by a watch of the Pods' readiness.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any, Final

from kuberesolver.kube.kubeconfig import load_client
from kuberesolver.operator.logic.readiness import Readiness
from kuberesolver.operator.logic.reconcile import Renderer
from kuberesolver.operator.logic.render import render_in_process
from kuberesolver.operator.runtime.heap import FirstRound, quiet_heap, settle
from kuberesolver.operator.runtime.hub import Hub, TargetKey, Trigger, run_coalesced
from kuberesolver.operator.runtime.informer import (
    LoopReflector,
    ServiceStore,
    pod_reflectors,
    service_reflectors,
)
from kuberesolver.operator.runtime.kube import ApiError, Kube
from kuberesolver.operator.runtime.leader import LeaderElector
from kuberesolver.operator.runtime.metrics import Metrics
from kuberesolver.operator.runtime.status_writer import StatusWriter
from kuberesolver.operator.runtime.targets import Entry, Targets
from kuberesolver.operator.runtime.worker import TargetWorker
from kuberesolver.operator.settings import Settings
from kuberesolver.xds.settings import XdsSettings

if TYPE_CHECKING:
    from kuberesolver.operator.xds.feed import XdsFeed

__all__ = ["Runtime"]

_log = logging.getLogger("kuberesolver.operator")

_RECONCILES_AT_ONCE: Final = 32
_FIRST_LISTS_S: Final = 120.0
"""The longest the collector stays off waiting for the first lists."""


class Runtime:
    """Everything the handlers and loops share. :meth:`close` is idempotent."""

    def __init__(
        self,
        settings: Settings,
        kube: Kube,
        metrics: Metrics,
        renderer: Renderer = render_in_process,
        xds: XdsSettings | None = None,
    ) -> None:
        self.settings = settings
        self.kube = kube
        self.metrics = metrics
        self.renderer = renderer
        self.hub = Hub()
        pod_readiness = xds is not None and xds.enabled and xds.pod_readiness
        self.store = ServiceStore(
            self._service_changed,
            self._pods_changed if pod_readiness else None,
            namespaces=settings.watch_namespaces,
        )
        self.xds: XdsFeed | None = None
        if xds is not None and xds.enabled:  # grpc is imported only then
            from kuberesolver.operator.xds.feed import XdsFeed

            self.xds = XdsFeed(xds, self.store, metrics.registry, on_denied=metrics.xds_denied)
        self._reflectors: list[LoopReflector] = []
        self.ignored: set[TargetKey] = set()
        """GrpcTargets kopf delivered from namespaces not watched (each logged once)."""
        self._watch_api: Any = None
        self.targets = Targets(self.hub, self._run_target)
        # Its own connection and thread: a renewal never queues behind ConfigMap writes.
        self.lease_kube = Kube(workers=1)
        self.elector = LeaderElector(
            self.lease_kube,
            namespace=settings.lease_namespace,
            name=settings.lease_name,
            identity=settings.identity,
            duration_s=settings.lease_duration_s,
            retry_s=settings.lease_retry_s,
            renew_deadline_s=settings.lease_renew_deadline_s,
            on_start=self._lead,
            on_stop=self.targets.follow,
        )
        metrics.follow_leadership(self.elector.leading_seen_from_a_thread)  # scraped on a thread
        # Status patches on their own connection: a ConfigMap write never waits behind them.
        self.status_kube = Kube(workers=2)
        self.status = StatusWriter(
            self.status_kube, leading=self.leading, on_error=self._status_failed
        )
        self._elector_task: asyncio.Task[None] | None = None
        self._posts: set[asyncio.Task[None]] = set()
        self.first_round = FirstRound()  # then the heap is settled (.heap)
        self._settle_task: asyncio.Task[None] | None = None
        # Reconciles between two awaits run back to back on the loop: when 1,000 targets
        # start at once, anything else (the Lease renewal) would wait for all of them.
        self._reconciling = asyncio.Semaphore(_RECONCILES_AT_ONCE)
        self._closed = False

    def _service_changed(self, key: tuple[str, str]) -> None:
        if self.xds is not None:  # first: its put is queued before the ConfigMap loops wake
            self.xds.wake_service(key)
        self.hub.wake_service(key)

    def _pods_changed(self, key: tuple[str, str]) -> None:
        if self.xds is not None:  # only the xDS feed reads Pods (ConfigMaps follow the slices)
            self.xds.wake_service(key)

    def leading(self) -> bool:
        return self.elector.leading

    def readiness(self) -> Readiness:
        """This replica's state, for ``GET /readyz`` (from memory)."""
        listed = [(r, self.store.synced(r)) for r in ("services", "endpointslices")]
        if self.store.tracks_pods:
            # Pods are optional (the xDS feed's early readiness): refused, they wait for no one.
            refused = any(r.refused for r in self._reflectors if r.name.startswith("pods"))
            listed.append(("pods", self.store.synced("pods") or refused))
        return Readiness(
            listed=tuple(listed),
            xds_listening=None if self.xds is None else self.xds.listening,
            holds_lease=self.leading(),
            leading_started=self.targets.leading,
        )

    def start(self) -> None:
        """Start watching, and taking part in the election (call from a running loop)."""
        if not self._reflectors:
            # Every replica watches (a standby stays warm); its own connections.
            self._watch_api, _ = load_client(pool_maxsize=4)
            self._reflectors = service_reflectors(
                self._watch_api, self.store, asyncio.get_running_loop()
            )
            if self.store.tracks_pods:
                self._reflectors += pod_reflectors(
                    self._watch_api, self.store, asyncio.get_running_loop()
                )
            self._settle_task = asyncio.create_task(self._settle_after_lists())
            for reflector in self._reflectors:
                reflector.start()
        if self._elector_task is None:
            self._elector_task = asyncio.create_task(self.elector.run(), name="kuberesolver-lease")

    async def _settle_after_lists(self) -> None:
        """The collector off while the first lists are read, then what they built frozen."""
        with quiet_heap(_FIRST_LISTS_S):
            await self.store.wait_synced("services", "endpointslices")
            settle("the first lists")  # before the collector is back: nothing to traverse

    async def _lead(self) -> None:
        self.first_round.begin(self.targets.keys())
        self.targets.lead()

    async def _run_target(self, key: TargetKey, entry: Entry, trigger: Trigger) -> None:
        worker = TargetWorker(self, key, entry, trigger)
        self.metrics.targets.inc()

        async def reconcile(first_wake: float | None) -> None:
            try:
                async with self._reconciling:
                    await worker.reconcile(first_wake)
            finally:
                self.first_round.reconciled(key)

        try:
            await run_coalesced(
                trigger,
                reconcile,
                budget=self.settings.write_budget,
                resync_s=self.settings.resync_s,
                on_error=worker.on_error,
            )
        finally:
            self.metrics.targets.dec()

    def _status_failed(self, key: TargetKey, exc: Exception) -> None:
        kind = "api" if isinstance(exc, ApiError) else "internal"
        self.metrics.errors.labels(kind).inc()
        _log.warning("%s/%s: status not written (%s); retrying", key[0], key[1], exc)

    def post_event(self, event: dict[str, Any]) -> None:
        """Post an Event in the background (a failure is logged, never raised)."""
        task = asyncio.create_task(self._post(event))
        self._posts.add(task)
        task.add_done_callback(self._posts.discard)

    async def _post(self, event: dict[str, Any]) -> None:
        try:
            await self.status_kube.post_event(event)  # the slow lane: never before a ConfigMap
        except Exception as exc:
            _log.warning("Event %s not posted: %s", event.get("reason"), exc)

    async def close(self) -> None:
        """Quick, for SIGTERM: the loops are cancelled (a render or write in flight is of no
        use once the process ends), the Lease released, the watches and ADS streams ended."""
        if self._closed:
            return
        self._closed = True
        await self.targets.close()  # the loops first: nothing waits for a render to finish
        await self.elector.close()  # stops leading, then releases the Lease
        for task in (self._elector_task, self._settle_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.xds is not None:
            await self.xds.stop(grace_s=0.5)  # ADS streams never end by themselves
        await self.status.close()
        for reflector in self._reflectors:
            reflector.stop()
        if self._posts:
            await asyncio.wait(set(self._posts), timeout=1)
        self.hub.close()
        self.metrics.close()
        self.kube.close()
        self.lease_kube.close()
        self.status_kube.close()
        if self._watch_api is not None:
            self._watch_api.close()
