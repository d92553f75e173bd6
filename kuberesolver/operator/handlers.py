"""The kopf handlers: thin, over the pure modules.

- ``service_index`` and ``endpointslice_index`` keep compact views of every
  Service and EndpointSlice (read-only: kopf writes nothing on foreign
  objects for indexes and event handlers).
- ``service_event`` and ``endpointslice_event`` wake the targets that follow
  the Service (after the index is updated: kopf indexes before it handles).
- ``grpctarget_event`` wakes a target when its spec changes, and ends its
  loop when it is deleted.
- ``grpctarget_daemon`` runs one coalescing loop per GrpcTarget
  (:func:`~kuberesolver.operator.hub.run_coalesced`) that plans
  (:func:`~kuberesolver.operator.reconcile.plan`) and writes the ConfigMap
  and the status. kopf stops daemons while a peer of higher priority is
  active, so only one replica writes.

No handler needs a finalizer: the ConfigMap is owned by its GrpcTarget and the
garbage collector removes it, so a GrpcTarget can be deleted while the
operator is down.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
from collections.abc import Mapping
from typing import Any

import kopf

from kuberesolver.endpointslices import (
    SERVICE_NAME_LABEL,
    ServiceView,
    SliceView,
    service_view,
    slice_view,
)
from kuberesolver.operator.configmap import build_configmap, controller_uid, is_owned_by
from kuberesolver.operator.hub import Hub, TargetKey, Trigger, run_coalesced
from kuberesolver.operator.kube import ApiError, Kube
from kuberesolver.operator.metrics import Metrics
from kuberesolver.operator.reconcile import Plan, Published, baseline, plan
from kuberesolver.operator.settings import Settings, SettingsError
from kuberesolver.operator.spec import GROUP, PLURAL, VERSION
from kuberesolver.operator.status import Condition, build_status, condition, status_changed
from kuberesolver.snapshot import ENDPOINTS_KEY, SnapshotError, decode

__all__ = ["Runtime"]

_log = logging.getLogger("kuberesolver.operator")


@dataclasses.dataclass
class Runtime:
    """What every handler shares; created at startup, closed at cleanup."""

    settings: Settings
    hub: Hub
    kube: Kube
    metrics: Metrics
    generations: dict[TargetKey, int] = dataclasses.field(default_factory=dict)

    def close(self) -> None:
        self.hub.close()
        self.metrics.close()
        self.kube.close()


class _QuietRoutine(logging.Filter):
    """Drop kopf's INFO line for every Service and EndpointSlice event: it is routine, and many."""

    _ROUTINE = ("'service_index'", "'endpointslice_index'", "'service_event'",
                "'endpointslice_event'", "'grpctarget_event'")  # fmt: skip

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO:
            return True
        message = record.getMessage()
        return not (message.endswith(" succeeded.") and any(h in message for h in self._ROUTINE))


class RetryLater(Exception):
    """A reconcile that must be repeated soon (a conflict that may clear by itself)."""


# --- operator lifecycle -----------------------------------------------------------------------


@kopf.on.startup()
async def operator_startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    try:
        ours = Settings.resolve()
    except SettingsError as exc:
        raise kopf.PermanentError(f"bad setting: {exc}") from exc
    settings.peering.priority = ours.peering_priority
    settings.peering.lifetime = ours.peering_lifetime_s
    settings.peering.stealth = True
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 300
    objects_logger = logging.getLogger("kopf.objects")
    if not any(isinstance(f, _QuietRoutine) for f in objects_logger.filters):
        objects_logger.addFilter(_QuietRoutine())
    runtime = Runtime(settings=ours, hub=Hub(), kube=Kube(), metrics=Metrics())
    try:
        runtime.metrics.serve(ours.metrics_port)
    except OSError as exc:
        runtime.close()
        raise kopf.PermanentError(
            f"cannot serve metrics on port {ours.metrics_port}: {exc}"
        ) from exc
    memo["runtime"] = runtime
    _log.info(
        "kuberesolver operator starting: debounce %d ms, metrics port %d, peering priority %d",
        ours.debounce_ms,
        ours.metrics_port,
        ours.peering_priority,
    )


@kopf.on.cleanup()
async def operator_cleanup(memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime | None = memo.get("runtime")
    if runtime is not None:
        runtime.close()


@kopf.on.probe(id="targets")
async def targets_probe(memo: kopf.Memo, **_: Any) -> int:
    runtime: Runtime | None = memo.get("runtime")
    return len(runtime.hub) if runtime is not None else 0


# --- what it reads: indexes and wake-ups ------------------------------------------------------


@kopf.index("", "v1", "services")
async def service_index(
    *, namespace: str | None, name: str, body: kopf.Body, **_: Any
) -> dict[tuple[str, str], ServiceView]:
    return {(namespace or "", name): service_view(body)}


@kopf.index("discovery.k8s.io", "v1", "endpointslices", labels={SERVICE_NAME_LABEL: kopf.PRESENT})
async def endpointslice_index(
    *, namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any
) -> dict[tuple[str, str], SliceView]:
    return {(namespace or "", labels[SERVICE_NAME_LABEL]): slice_view(body)}


@kopf.on.event("", "v1", "services")
async def service_event(*, namespace: str | None, name: str, memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime | None = memo.get("runtime")
    if runtime is not None:
        runtime.hub.wake_service((namespace or "", name))


@kopf.on.event(
    "discovery.k8s.io", "v1", "endpointslices", labels={SERVICE_NAME_LABEL: kopf.PRESENT}
)
async def endpointslice_event(
    *, namespace: str | None, labels: kopf.Labels, memo: kopf.Memo, **_: Any
) -> None:
    runtime: Runtime | None = memo.get("runtime")
    if runtime is not None:
        runtime.hub.wake_service((namespace or "", labels[SERVICE_NAME_LABEL]))


@kopf.on.event(GROUP, VERSION, PLURAL)
async def grpctarget_event(
    *,
    type: str,
    namespace: str | None,
    name: str,
    uid: str,
    body: kopf.Body,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    runtime: Runtime | None = memo.get("runtime")
    if runtime is None:
        return
    key = (namespace or "", name)
    if type == "DELETED":
        runtime.hub.gone(key, uid)
        runtime.generations.pop(key, None)
        runtime.metrics.forget_target(key[0], name)
    elif body.get("metadata", {}).get("generation") != runtime.generations.get(key):
        runtime.hub.wake_target(key)


# --- what it writes: one loop per GrpcTarget --------------------------------------------------


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_backoff=2.0, cancellation_timeout=10.0)
async def grpctarget_daemon(
    *,
    name: str,
    namespace: str | None,
    uid: str,
    body: kopf.Body,
    memo: kopf.Memo,
    stopped: kopf.DaemonStopped,
    **kwargs: Any,
) -> None:
    # The indexes come as kwargs named after their handlers.
    service_index: kopf.Index[tuple[str, str], ServiceView] = kwargs["service_index"]
    endpointslice_index: kopf.Index[tuple[str, str], SliceView] = kwargs["endpointslice_index"]
    runtime: Runtime = memo["runtime"]
    key = (namespace or "", name)
    trigger = runtime.hub.attach(key, uid)
    runtime.metrics.targets.inc()
    worker = TargetWorker(runtime, key, uid, body, service_index, endpointslice_index, trigger)
    watcher = asyncio.create_task(_close_when_stopped(stopped, trigger))
    try:
        await run_coalesced(
            trigger,
            worker.reconcile,
            window_s=runtime.settings.debounce_s,
            resync_s=runtime.settings.resync_s,
            on_error=worker.on_error,
        )
    finally:
        watcher.cancel()
        runtime.hub.detach(key, trigger)
        runtime.metrics.targets.dec()


async def _close_when_stopped(stopped: kopf.DaemonStopped, trigger: Trigger) -> None:
    await stopped.wait()
    trigger.close()


def _without_finalizer() -> None:
    """kopf gives every daemon a finalizer; ours needs none (see the module docstring)."""
    spawning = kopf.get_default_registry()._spawning
    for i, handler in enumerate(spawning._handlers):
        if handler.fn is grpctarget_daemon:
            spawning._handlers[i] = dataclasses.replace(handler, requires_finalizer=False)


_without_finalizer()


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


class TargetWorker:
    """Carries out the plans of one GrpcTarget: ConfigMap, status, Events, metrics."""

    def __init__(
        self,
        runtime: Runtime,
        key: TargetKey,
        uid: str,
        body: kopf.Body,
        services: kopf.Index[tuple[str, str], ServiceView],
        slices: kopf.Index[tuple[str, str], SliceView],
        trigger: Trigger | None = None,
    ) -> None:
        self.runtime = runtime
        self.namespace, self.name = key
        self.key = key
        self.uid = uid
        self.body = body  # kopf's live view: always the latest seen state
        self.services = services
        self.slices = slices
        self.configmap: dict[str, Any] | None = None
        self.configmap_name: str | None = None
        self.published: Published | None = None
        self.warned: set[tuple[str, str]] = set()
        self.last_error: str | None = None
        self.ready_before: str | None = None  # the Ready status this worker last reported
        self.trigger = trigger

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
            kopf.warn(self.body, reason="ReconcileFailed", message=message[:1000])

    async def reconcile(self, first_wake: float | None) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        meta = self.body.get("metadata", {})
        generation = int(meta.get("generation") or 0)
        raw_spec = _plain(self.body.get("spec") or {})
        old_status = _plain(self.body.get("status") or {})
        self.runtime.generations[self.key] = generation

        svc_key = (raw_spec.get("serviceNamespace") or self.namespace, raw_spec.get("service", ""))
        self.runtime.hub.follow(self.key, svc_key)
        service = next(iter(self.services.get(svc_key, ())), None)
        slices = list(self.slices.get(svc_key, ()))

        cm_name = raw_spec.get("configMapName") or self.name
        if first_wake is None:
            # A periodic resync, not a change: re-read the ConfigMap, so that
            # an edit by hand (or a deletion) is repaired.
            self.configmap_name = None
        if self.configmap_name != cm_name:
            await self._load_configmap(cm_name, old_status)

        the_plan = plan(self.name, self.namespace, raw_spec, service, slices, self.published)
        conditions = list(the_plan.conditions)
        wrote = False
        retry: str | None = None
        failed: ApiError | None = None
        if the_plan.target is None:
            self.runtime.metrics.errors.labels("spec").inc()
        elif not the_plan.publishes:
            kind = (
                "refused"
                if any(r == "CrossNamespaceRefused" for r, _ in the_plan.warnings)
                else "render"
            )
            self.runtime.metrics.errors.labels(kind).inc()
        else:
            try:
                wrote = await self._publish(the_plan)
            except RetryLater as exc:
                retry = str(exc)
                conditions[0] = condition("Ready", False, "ConfigMapConflict", retry)
                self.runtime.metrics.errors.labels("conflict").inc()
            except ApiError as exc:
                # Nothing was published; say so, then let the loop retry with backoff.
                failed = exc
                conditions[0] = condition("Ready", False, "WriteFailed", str(exc)[:1000])

        ok = retry is None and failed is None
        snapshot = the_plan.snapshot if the_plan.publishes and ok else None
        status = build_status(
            old_status,
            conditions,
            generation=generation,
            now=datetime.datetime.now(datetime.UTC),
            configmap_name=cm_name,
            ready_endpoints=len(snapshot.ready_endpoints) if snapshot else None,
            total_endpoints=len(snapshot.endpoints) if snapshot else None,
            revision=self.published.revision if self.published else None,
            updated=wrote,
        )
        if status_changed(old_status, status):
            try:
                await self.runtime.kube.patch_status(self.namespace, self.name, dict(status))
            except ApiError as exc:
                if exc.status == 404 and self.trigger is not None:
                    # Deleted before kopf told us: end this loop (the GC takes the ConfigMap).
                    _log.info("%s/%s is gone; stopping", self.namespace, self.name)
                    self.trigger.close()
                    return
                raise
        self._emit_events(the_plan, conditions[0], old_status, retry)
        if snapshot is not None:
            self.runtime.metrics.set_endpoints(
                self.namespace, self.name, len(snapshot.ready_endpoints), len(snapshot.endpoints)
            )
        if ok:
            self.last_error = None
        done = loop.time()
        self.runtime.metrics.reconcile_seconds.observe(
            done - (first_wake if first_wake is not None else started)
        )
        if failed is not None:
            raise failed
        if retry is not None:
            raise RetryLater(retry)

    async def _load_configmap(self, cm_name: str, old_status: Mapping[str, Any]) -> None:
        """Read the ConfigMap once: what it holds is the revision baseline after a restart."""
        cm = await self.runtime.kube.get_configmap(self.namespace, cm_name)
        stored: Published | None = None
        if cm is not None and is_owned_by(cm, self.uid):
            raw = (cm.get("data") or {}).get(ENDPOINTS_KEY)
            if raw:
                try:
                    previous = decode(raw, f"ConfigMap {self.namespace}/{cm_name}")
                except SnapshotError as exc:
                    _log.warning("%s; it will be rewritten", exc)
                else:
                    stored = Published(previous.revision, previous.endpoints)
        self.configmap = cm
        self.configmap_name = cm_name
        self.published = baseline(self.published, stored, int(old_status.get("revision") or 0))

    async def _publish(self, the_plan: Plan) -> bool:
        """Create or update the ConfigMap when its data differs; whether it wrote."""
        assert the_plan.target is not None
        assert the_plan.data is not None
        assert the_plan.snapshot is not None
        target = the_plan.target
        desired = build_configmap(target, self.uid, the_plan.data)
        current = self.configmap
        kube = self.runtime.kube
        wrote = False
        try:
            if current is None:
                self.configmap = await kube.create_configmap(desired)
                self.runtime.metrics.configmap_writes.labels("create").inc()
                wrote = True
            elif not is_owned_by(current, self.uid):
                owner = controller_uid(current)
                self.configmap_name = None  # re-read next time: it may be gone by then
                raise RetryLater(
                    f"ConfigMap {self.namespace}/{target.configmap_name} exists and is not owned "
                    f"by this GrpcTarget (controller uid {owner or 'none'}); it is left untouched"
                )
            elif (current.get("data") or {}) != the_plan.data or _labels_differ(current, desired):
                body = _merge_metadata(current, desired)
                self.configmap = await kube.replace_configmap(body)
                self.runtime.metrics.configmap_writes.labels("update").inc()
                wrote = True
        except ApiError as exc:
            # Whatever failed (and whether the write landed or not), re-read the
            # ConfigMap before the next attempt: it is the revision baseline.
            self.configmap_name = None
            if exc.status in (404, 409):
                raise RetryLater(f"ConfigMap changed concurrently ({exc}); re-reading") from exc
            raise
        self.published = Published(the_plan.snapshot.revision, the_plan.snapshot.endpoints)
        return wrote

    def _emit_events(
        self, the_plan: Plan, ready: Condition, old_status: Mapping[str, Any], retry: str | None
    ) -> None:
        warnings = set(the_plan.warnings)
        if retry is not None:
            warnings.add(("ConfigMapNotPublished", retry))
        for reason, message in sorted(warnings - self.warned):
            kopf.warn(self.body, reason=reason, message=message[:1000])
        self.warned = warnings
        if self.ready_before is None:
            before = {c.get("type"): c.get("status") for c in old_status.get("conditions") or []}
            self.ready_before = str(before.get("Ready") or "Unknown")
        if ready.status == "True" and self.ready_before != "True":
            kopf.info(self.body, reason="Published", message=ready.message)
        self.ready_before = ready.status


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
