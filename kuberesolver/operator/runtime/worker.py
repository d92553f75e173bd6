"""One GrpcTarget's reconcile: plan, render, publish, report (the effects around the pure steps).

:class:`TargetWorker` runs inside the target's coalescing loop
(:func:`~kuberesolver.operator.runtime.hub.run_coalesced`), started by
:class:`~kuberesolver.operator.runtime.targets.Targets` while this replica leads.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Mapping
from typing import Any, Literal, Protocol

from kuberesolver.core.endpointslices import (
    EndpointCache,
    ServiceView,
    SliceView,
    service_view,
    slice_view,
)
from kuberesolver.core.snapshot import ENDPOINTS_KEY, EncodedEndpoints, SnapshotError, decode
from kuberesolver.operator.logic.configmap import build_configmap, controller_uid, is_owned_by
from kuberesolver.operator.logic.reconcile import (
    Plan,
    Publish,
    Published,
    Rendered,
    Renderer,
    Report,
    ServiceState,
    WriteFailed,
    Written,
    baseline,
    plan,
    render,
    report,
)
from kuberesolver.operator.logic.spec import plain
from kuberesolver.operator.logic.status import build_status, status_changed, summary_only
from kuberesolver.operator.runtime.events import build_event
from kuberesolver.operator.runtime.hub import Hub, ServiceKey, TargetKey, Trigger
from kuberesolver.operator.runtime.informer import ServiceStore
from kuberesolver.operator.runtime.kube import ApiError, Kube
from kuberesolver.operator.runtime.metrics import Metrics
from kuberesolver.operator.runtime.status_writer import StatusWriter
from kuberesolver.operator.runtime.targets import Entry
from kuberesolver.operator.settings import Settings

__all__ = ["RetryLater", "TargetWorker", "WorkerContext"]

_log = logging.getLogger("kuberesolver.operator")


class RetryLater(Exception):
    """A reconcile to repeat with backoff (a failed write that may clear by itself)."""


class WorkerContext(Protocol):
    """What a worker uses of the replica's runtime (:class:`~.runtime.Runtime` has it)."""

    settings: Settings
    kube: Kube
    metrics: Metrics
    renderer: Renderer
    hub: Hub
    store: ServiceStore
    status: StatusWriter

    def leading(self) -> bool: ...

    def post_event(self, event: dict[str, Any]) -> None: ...


class TargetWorker:
    """Carries out the plans of one GrpcTarget: ConfigMap, status, Events, metrics."""

    def __init__(
        self, runtime: WorkerContext, key: TargetKey, entry: Entry, trigger: Trigger
    ) -> None:
        self.runtime = runtime
        self.key = key
        self.namespace, self.name = key
        self.entry = entry
        self.trigger = trigger
        self.configmap: dict[str, Any] | None = None
        self.configmap_name: str | None = None
        self.published: Published | None = None
        self.warned: frozenset[tuple[str, str]] = frozenset()
        self.last_error: str | None = None
        self.ready_before: str | None = None  # the Ready status this worker last reported
        self.sent_status: Mapping[str, Any] | None = None  # the last status handed to the lane
        self.loaded = False  # whether a ConfigMap was ever looked for
        self.confirmed = False  # whether a missing Service or slice was checked with the API
        self.status_at = -float("inf")  # loop time of the last status handed to the lane
        self.status_timer: asyncio.TimerHandle | None = None
        self.endpoints = EndpointCache()
        self._read_body: Mapping[str, Any] | None = None
        self._spec: dict[str, Any] = {}
        self._status: dict[str, Any] = {}
        self.encoded = EncodedEndpoints()
        self.known_text: tuple[str, Published] | None = None
        """An ``endpoints.json`` text and what it decodes to (the last written or read)."""

    @property
    def uid(self) -> str:
        return self.entry.uid

    def on_error(self, exc: BaseException) -> None:
        if isinstance(exc, RetryLater):
            _log.info("%s/%s: %s; retrying", self.namespace, self.name, exc)
            return
        kind = "api" if isinstance(exc, ApiError) else "internal"
        self.runtime.metrics.errors.labels(kind).inc()
        message = f"{exc}"
        _log.warning("%s/%s: reconcile failed: %s", self.namespace, self.name, message)
        if message != self.last_error:
            self.last_error = message
            self._post("Warning", "ReconcileFailed", message)

    async def reconcile(self, first_wake: float | None) -> None:
        if not self.runtime.leading():
            return
        # Nothing is planned from half a world: a Service not listed yet is not "missing".
        await self.runtime.store.wait_synced("services", "endpointslices")
        loop = asyncio.get_running_loop()
        started = loop.time()
        body = self.entry.body
        generation = int((body.get("metadata") or {}).get("generation") or 0)
        if body is not self._read_body:  # copied once per object kopf hands over, not per change
            self._read_body = body
            self._spec = plain(body.get("spec") or {})
            self._status = plain(body.get("status") or {})
        raw_spec, old_status = self._spec, self._status
        self.entry.planned_generation = generation

        svc_key = (raw_spec.get("serviceNamespace") or self.namespace, raw_spec.get("service", ""))
        self.runtime.hub.follow(self.key, svc_key)
        store = self.runtime.store
        service, slices = store.lookup(svc_key)
        if not self.confirmed and (service is None or not slices) and store.watches(svc_key[0]):
            service, slices = await self._confirm(svc_key, service, slices)
        cm_name = raw_spec.get("configMapName") or self.name
        if first_wake is None:
            # A periodic resync, not a change: re-read the ConfigMap, so that
            # an edit by hand (or a deletion) is repaired, and compare the status with the API's.
            self.configmap_name = None
            self.sent_status = None
        if self.configmap_name != cm_name:
            await self._load_configmap(cm_name, old_status)

        the_plan = plan(
            self.name,
            self.namespace,
            raw_spec,
            service,
            slices,
            self.published,
            self.endpoints,
            watched=store.namespaces,
        )
        rendered = (
            await render(the_plan, self.runtime.renderer, self.encoded)
            if isinstance(the_plan, Publish)
            else None
        )
        written = (
            await self._publish(the_plan, rendered) if isinstance(rendered, Rendered) else None
        )
        if isinstance(written, WriteFailed):
            self.runtime.metrics.write_failed(written.reason)
        rep = report(the_plan, rendered, written, kept=self._kept())
        if not await self._report(rep, generation, cm_name, old_status, written):
            return
        if rep.error_kind is not None:
            self.runtime.metrics.errors.labels(rep.error_kind).inc()
        if rep.current is not None:
            self.runtime.metrics.set_endpoints(self.namespace, self.name, rep.current.endpoints)
        self.runtime.metrics.reconcile_seconds.observe(
            loop.time() - (first_wake if first_wake is not None else started)
        )
        if isinstance(written, WriteFailed) and written.retry:
            raise RetryLater(written.message)
        self.last_error = None

    async def _confirm(
        self, key: ServiceKey, service: ServiceView | None, slices: list[SliceView]
    ) -> tuple[ServiceView | None, list[SliceView]]:
        """A new target's first plan, when the watches show no Service or no slices: read them.

        Watches of different resources are not ordered: a GrpcTarget created
        with its Service can be seen first, and an empty snapshot published for
        a Service that exists. One consistent read settles it; later changes
        come by the watches.
        """
        self.confirmed = True
        got = await self.runtime.kube.get_service(*key)
        if got is None:
            return service, slices
        items = await self.runtime.kube.list_service_slices(*key)
        return service_view(got), [slice_view(s) for s in sorted(items, key=_name)]

    def _kept(self) -> bool:
        return self.configmap is not None and is_owned_by(self.configmap, self.uid)

    async def _load_configmap(self, cm_name: str, old_status: Mapping[str, Any]) -> None:
        """Read the ConfigMap once: what it holds is the revision baseline after a restart.

        A target whose status names no ConfigMap has never been published: the
        first write is a create without a read (one call, not two, per new
        target); should one exist after all, the create's 409 makes the next
        attempt read it.
        """
        fresh = not self.loaded and not old_status.get("configMapName")
        self.loaded = True
        cm = None if fresh else await self.runtime.kube.get_configmap(self.namespace, cm_name)
        stored: Published | None = None
        if cm is not None and is_owned_by(cm, self.uid):
            raw = (cm.get("data") or {}).get(ENDPOINTS_KEY)
            if raw and self.known_text is not None and raw == self.known_text[0]:
                stored = self.known_text[1]  # what this worker wrote (a resync): no decoding
            elif raw:
                try:
                    previous = decode(raw, f"ConfigMap {self.namespace}/{cm_name}")
                except SnapshotError as exc:
                    _log.warning("%s; it will be rewritten", exc)
                else:
                    stored = Published(previous.revision, previous.endpoints)
                    self.known_text = (raw, stored)
        self.configmap = cm
        self.configmap_name = cm_name
        self.published = baseline(self.published, stored, int(old_status.get("revision") or 0))

    async def _publish(self, the_plan: Plan, rendered: Rendered) -> Written | WriteFailed:
        """Create or update the ConfigMap when its data differs."""
        assert isinstance(the_plan, Publish)
        target = the_plan.target
        desired = build_configmap(target, self.uid, rendered.data)
        current = self.configmap
        kube = self.runtime.kube
        name = f"ConfigMap {self.namespace}/{target.configmap_name}"
        if not self.runtime.leading():
            return WriteFailed("NotLeading", "this replica no longer leads", retry=False)
        try:
            if current is None:
                try:
                    self.configmap = await kube.create_configmap(desired)
                except ApiError as exc:
                    if exc.status != 409:
                        raise
                    # It exists after all (a target never published before): read it, go on.
                    current = self.configmap = await kube.get_configmap(
                        self.namespace, target.configmap_name
                    )
                    if current is None:
                        raise
                    if is_owned_by(current, self.uid):  # ours: its revision is the baseline
                        self.configmap_name = None
                        return WriteFailed("ConfigMapConflict", f"{name} exists; re-reading", True)
                else:
                    self.runtime.metrics.configmap_writes.labels("create").inc()
            if current is None:
                wrote = True
            elif not is_owned_by(current, self.uid):
                owner = controller_uid(current)
                self.configmap_name = None  # re-read next time: it may be gone by then
                return WriteFailed(
                    "ConfigMapConflict",
                    f"{name} exists and is not owned by this GrpcTarget "
                    f"(controller uid {owner or 'none'}); it is left untouched",
                    retry=True,
                )
            elif (current.get("data") or {}) != rendered.data or _labels_differ(current, desired):
                self.configmap = await kube.replace_configmap(_merge_metadata(current, desired))
                self.runtime.metrics.configmap_writes.labels("update").inc()
                wrote = True
            else:
                wrote = False
        except ApiError as exc:
            # Whatever failed (and whether the write landed or not), re-read the
            # ConfigMap before the next attempt: it is the revision baseline.
            self.configmap_name = None
            if exc.status in (404, 409):
                return WriteFailed(
                    "ConfigMapConflict", f"{name} changed concurrently ({exc}); re-reading", True
                )
            if exc.status == 422:  # the apiserver refuses this object: retrying cannot help
                return WriteFailed("WriteRefused", f"the apiserver refuses {name}: {exc}", False)
            return WriteFailed("WriteFailed", str(exc), retry=True)
        self.published = Published(the_plan.snapshot.revision, the_plan.snapshot.endpoints)
        self.known_text = (rendered.data[ENDPOINTS_KEY], self.published)
        return Written(wrote)

    async def _report(
        self,
        rep: Report,
        generation: int,
        cm_name: str,
        old_status: Mapping[str, Any],
        written: Written | WriteFailed | None,
    ) -> bool:
        """Hand the status to the status lane and post the Events; ``False`` when the loop ends."""
        if self.trigger.closed:
            return False
        current = rep.current
        # What this worker last sent is newer than the object kopf last showed it.
        base = self.sent_status if self.sent_status is not None else old_status
        status = build_status(
            base,
            rep.conditions,
            generation=generation,
            now=datetime.datetime.now(datetime.UTC),
            configmap_name=cm_name,
            ready_endpoints=rep.ready_count if current else None,
            total_endpoints=len(current.endpoints) if current else None,
            revision=self.published.revision if self.published else None,
            updated=isinstance(written, Written) and written.wrote,
        )
        if status_changed(base, status) and self.runtime.leading():
            self._submit_status(status, urgent=not summary_only(base, status))
        for reason, message in sorted(rep.warnings - self.warned):
            if reason == ServiceState.NOT_WATCHED.value:  # a setup problem: say it in the log too
                _log.warning("%s/%s: %s", self.namespace, self.name, message)
            self._post("Warning", reason, message)
        self.warned = rep.warnings
        if self.ready_before is None:
            before = {c.get("type"): c.get("status") for c in old_status.get("conditions") or []}
            self.ready_before = str(before.get("Ready") or "Unknown")
        if rep.ready.status == "True" and self.ready_before != "True":
            self._post("Normal", "Published", rep.ready.message)
        self.ready_before = rep.ready.status
        return True

    def _submit_status(self, status: Mapping[str, Any], *, urgent: bool) -> None:
        """Hand ``status`` to the lane now, or (a summary-only change) once the interval is up."""
        loop = asyncio.get_running_loop()
        self.sent_status = dict(status)
        wait = self.status_at + self.runtime.settings.status_interval_s - loop.time()
        if urgent or wait <= 0:
            self._send_status()
        elif self.status_timer is None:
            self.status_timer = loop.call_later(wait, self._send_status)

    def _send_status(self) -> None:
        if self.status_timer is not None:
            self.status_timer.cancel()
            self.status_timer = None
        if self.sent_status is None or self.trigger.closed or not self.runtime.leading():
            return
        self.status_at = asyncio.get_running_loop().time()
        self.runtime.status.submit(self.key, self.sent_status, self.trigger.close)

    def _post(self, type_: Literal["Normal", "Warning"], reason: str, message: str) -> None:
        body = {**self.entry.body}
        event = build_event(
            body,
            type_,
            reason,
            message,
            instance=self.runtime.settings.identity,
            now=datetime.datetime.now(datetime.UTC),
        )
        self.runtime.post_event(event)


def _name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


def _labels_differ(current: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    have = (current.get("metadata") or {}).get("labels") or {}
    want = desired["metadata"]["labels"]
    return any(have.get(k) != v for k, v in want.items())


def _merge_metadata(current: Mapping[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
    """``desired``, keeping the current labels, annotations and resourceVersion."""
    meta = dict(current.get("metadata") or {})
    labels = dict(meta.get("labels") or {})
    labels.update(desired["metadata"]["labels"])
    body = dict(desired)
    body["metadata"] = {
        "name": meta.get("name"),
        "namespace": meta.get("namespace"),
        "resourceVersion": meta.get("resourceVersion"),
        "labels": labels,
        "annotations": meta.get("annotations") or {},
        "ownerReferences": meta.get("ownerReferences") or desired["metadata"]["ownerReferences"],
    }
    return body
