"""What the handlers share, in one object: created at startup, closed at cleanup.

- :class:`IndexViews`: kopf's Service and EndpointSlice indexes, as handed to
  the handlers (live, read-only views), for the loops to read.
- :class:`~kuberesolver.operator.targets.Targets`: the known GrpcTargets and
  their loops.
- :class:`~kuberesolver.operator.leader.LeaderElector`: the Lease; the loops
  run only while this replica holds it.
- the renderer of templates (:data:`~kuberesolver.operator.reconcile.Renderer`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from kuberesolver.endpointslices import ServiceView, SliceView
from kuberesolver.operator.hub import Hub, ServiceKey, TargetKey, Trigger, run_coalesced
from kuberesolver.operator.kube import Kube
from kuberesolver.operator.leader import LeaderElector
from kuberesolver.operator.metrics import Metrics
from kuberesolver.operator.reconcile import Renderer
from kuberesolver.operator.render import render_in_process
from kuberesolver.operator.settings import Settings
from kuberesolver.operator.targets import Entry, Targets

__all__ = ["IndexViews", "Runtime"]

_log = logging.getLogger("kuberesolver.operator")


@dataclass
class IndexViews:
    """kopf's ``service_index`` and ``endpointslice_index``, bound by the first handler call."""

    services: Mapping[ServiceKey, Collection[ServiceView]] = field(default_factory=dict)
    slices: Mapping[ServiceKey, Collection[SliceView]] = field(default_factory=dict)

    def bind(
        self,
        services: Mapping[ServiceKey, Collection[ServiceView]],
        slices: Mapping[ServiceKey, Collection[SliceView]],
    ) -> None:
        self.services, self.slices = services, slices

    def lookup(self, key: ServiceKey) -> tuple[ServiceView | None, list[SliceView]]:
        return next(iter(self.services.get(key, ())), None), list(self.slices.get(key, ()))


class Runtime:
    """Everything the handlers and loops share. :meth:`close` is idempotent."""

    def __init__(
        self,
        settings: Settings,
        kube: Kube,
        metrics: Metrics,
        renderer: Renderer = render_in_process,
    ) -> None:
        self.settings = settings
        self.kube = kube
        self.metrics = metrics
        self.renderer = renderer
        self.hub = Hub()
        self.views = IndexViews()
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
        self._elector_task: asyncio.Task[None] | None = None
        self._posts: set[asyncio.Task[None]] = set()
        self._closed = False

    def leading(self) -> bool:
        return self.elector.leading

    def start(self) -> None:
        """Start taking part in the election (call from a running loop)."""
        if self._elector_task is None:
            self._elector_task = asyncio.create_task(self.elector.run(), name="kuberesolver-lease")

    async def _lead(self) -> None:
        self.targets.lead()

    async def _run_target(self, key: TargetKey, entry: Entry, trigger: Trigger) -> None:
        from kuberesolver.operator.worker import TargetWorker

        worker = TargetWorker(self, key, entry, trigger)
        self.metrics.targets.inc()
        try:
            await run_coalesced(
                trigger,
                worker.reconcile,
                window_s=self.settings.debounce_s,
                resync_s=self.settings.resync_s,
                on_error=worker.on_error,
            )
        finally:
            self.metrics.targets.dec()

    def post_event(self, event: dict[str, Any]) -> None:
        """Post an Event in the background (a failure is logged, never raised)."""
        task = asyncio.create_task(self._post(event))
        self._posts.add(task)
        task.add_done_callback(self._posts.discard)

    async def _post(self, event: dict[str, Any]) -> None:
        try:
            await self.kube.post_event(event)
        except Exception as exc:
            _log.warning("Event %s not posted: %s", event.get("reason"), exc)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self.elector.close()  # stops the loops, then releases the Lease
        if self._elector_task is not None:
            self._elector_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._elector_task
        await self.targets.close()
        if self._posts:
            await asyncio.wait(set(self._posts), timeout=5)
        self.hub.close()
        self.metrics.close()
        self.kube.close()
        self.lease_kube.close()
