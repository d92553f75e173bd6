"""The kopf handlers: a few lines each, over :mod:`.runtime` and the pure modules.

- ``operator_startup`` / ``operator_cleanup``: create the
  :class:`~kuberesolver.operator.runtime.runtime.Runtime` (which takes part in the
  Lease election) and close it.
- Services and EndpointSlices are not kopf's: the runtime's own watches
  (:mod:`.runtime.informer`) keep them, far cheaper at 100,000 endpoints.
- ``grpctarget_event`` tells :class:`~kuberesolver.operator.runtime.targets.Targets`
  of every GrpcTarget version and deletion; the operator's own task per
  target (while this replica holds the Lease) plans and writes.

Namespaced mode (``KUBERESOLVER_WATCH_NAMESPACES``, with kopf's ``--namespace``
arguments naming the same namespaces): every watch and list is per namespace,
kopf's scans of namespaces and CRDs are off (they are cluster-wide), and a
GrpcTarget kopf delivers from another namespace is ignored with one log line.

Every replica runs every handler and every watch (no kopf peering: warm views everywhere);
only the Lease holder writes. No handler needs a finalizer: the ConfigMap is
owned by its GrpcTarget and the garbage collector removes it, so a GrpcTarget
can be deleted while the operator is down.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Mapping
from typing import Any

import kopf

from kuberesolver.operator.logic.spec import GROUP, PLURAL, VERSION, plain
from kuberesolver.operator.runtime.events import REPORTER
from kuberesolver.operator.runtime.kube import Kube
from kuberesolver.operator.runtime.metrics import shared
from kuberesolver.operator.runtime.ready_server import ReadyServer
from kuberesolver.operator.runtime.runtime import Runtime
from kuberesolver.operator.sandbox.render_pool import RenderPool
from kuberesolver.operator.settings import Settings, SettingsError, log_format
from kuberesolver.xds.settings import XdsSettings

__all__ = [
    "grpctarget_event",
    "operator_cleanup",
    "operator_startup",
    "targets_probe",
]

_log = logging.getLogger("kuberesolver.operator")


class _QuietRoutine(logging.Filter):
    """Drop kopf's INFO line for every Service and EndpointSlice event: it is routine, and many."""

    _ROUTINE = ("'grpctarget_event'",)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO:
            return True
        message = record.getMessage()
        return not (message.endswith(" succeeded.") and any(h in message for h in self._ROUTINE))


def apply_log_format(environ: Mapping[str, str] | None = None) -> None:
    """``KUBERESOLVER_LOG_FORMAT`` set: log as ``kopf run --log-format`` would (kopf's public
    :func:`kopf.configure`), keeping the level the command line chose. Ours log through
    the root logger, as kopf's own do, so both come out in that format."""
    try:
        chosen = log_format(environ)
    except SettingsError:
        return  # operator_startup refuses to start, and says why
    if not chosen:
        return
    level = logging.getLogger().getEffectiveLevel()
    kopf.configure(
        debug=level <= logging.DEBUG and logging.getLogger("asyncio").propagate,
        verbose=level <= logging.DEBUG,
        quiet=level >= logging.WARNING,
        log_format=kopf.LogFormat[chosen.upper()],
    )


apply_log_format()  # at import: kopf run has configured logging, and logged nothing of ours yet


def _runtime(memo: kopf.Memo) -> Runtime | None:
    runtime: Runtime | None = memo.get("runtime")
    return runtime


# --- operator lifecycle -----------------------------------------------------------------------


@kopf.on.startup()
async def operator_startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    try:
        ours = Settings.resolve()
        xds = XdsSettings.from_env()
    except (SettingsError, ValueError) as exc:
        raise kopf.PermanentError(f"bad setting: {exc}") from exc
    _check_mode(ours, settings.peering.clusterwide)
    if ours.watch_namespaces:
        # Listing namespaces and watching CRDs are cluster-wide; the namespaces are given.
        settings.scanning.disabled = True
    settings.posting.enabled = False  # our Events are posted by the leader (worker.py)
    settings.posting.reporting_component = REPORTER
    settings.posting.reporting_instance = ours.identity
    settings.watching.server_timeout = 300
    objects_logger = logging.getLogger("kopf.objects")
    if not any(isinstance(f, _QuietRoutine) for f in objects_logger.filters):
        objects_logger.addFilter(_QuietRoutine())
    metrics = shared(memo)
    try:
        metrics.serve(ours.metrics_port)
    except OSError as exc:
        metrics.close()
        raise kopf.PermanentError(
            f"cannot serve metrics on port {ours.metrics_port}: {exc}"
        ) from exc
    pool = RenderPool.from_settings(ours)  # templates never run in this process
    memo["render_pool"] = pool
    try:
        await pool.start()
    except RuntimeError as exc:  # renders will try again, and say so in the targets' status
        _log.error("%s", exc)
    # ConfigMap writes: enough in flight that a slow apiserver answer delays no other target.
    runtime = Runtime(ours, Kube(workers=16), metrics, renderer=pool.render, xds=xds)
    memo["runtime"] = runtime
    runtime.start()
    if runtime.xds is not None:  # every replica serves xDS (kuberesolver/operator/xds/feed.py)
        try:
            await runtime.xds.start()
        except (OSError, RuntimeError) as exc:
            raise kopf.PermanentError(f"cannot serve xDS on {xds.address}: {exc}") from exc
    if ours.ready_port:
        ready = ReadyServer(runtime.readiness, ours.ready_port)
        try:
            await ready.start()
        except OSError as exc:
            raise kopf.PermanentError(
                f"cannot serve /readyz on port {ours.ready_port}: {exc}"
            ) from exc
        memo["ready_server"] = ready
    _log.info(
        "kuberesolver operator starting as %s: write budget %s, metrics port %d, Lease %s/%s, "
        "watching %s",
        ours.identity,
        ours.write_budget,
        ours.metrics_port,
        ours.lease_namespace,
        ours.lease_name,
        ", ".join(ours.watch_namespaces) or "all namespaces",
    )


def _check_mode(ours: Settings, clusterwide: bool) -> None:
    """Refuse to start when kopf's watch and ours disagree on the mode: kopf cluster-wide
    under namespaced RBAC is refused every call, and kopf namespaced with cluster-wide
    watches would serve targets it never hears of."""
    if ours.watch_namespaces and clusterwide:
        flags = " ".join(f"--namespace={ns}" for ns in ours.watch_namespaces)
        raise kopf.PermanentError(
            f"KUBERESOLVER_WATCH_NAMESPACES={','.join(ours.watch_namespaces)} is set, but kopf "
            f"runs with --all-namespaces: run it with {flags} instead"
        )
    if not ours.watch_namespaces and not clusterwide:
        raise kopf.PermanentError(
            "kopf runs with --namespace but KUBERESOLVER_WATCH_NAMESPACES is not set: "
            "set it to the same namespaces (comma-separated), or run kopf with --all-namespaces"
        )


@kopf.on.cleanup()
async def operator_cleanup(memo: kopf.Memo, **_: Any) -> None:
    """Stop the loops, release the Lease, end the watches, kill and reap the render workers;
    then make the interpreter's exit quick (see below)."""
    ready: ReadyServer | None = memo.get("ready_server")
    if ready is not None:
        await ready.close()
    runtime = _runtime(memo)
    if runtime is not None:
        await runtime.close()
    pool: RenderPool | None = memo.get("render_pool")
    if pool is not None:
        await pool.aclose()
    # The process exits next. At exit the interpreter runs full garbage collections over
    # every object, which the OS reclaims anyway: measured with the operator's modules
    # loaded, 2-4 s of wall time on two loaded cores (0.1-0.3 s with this), so that a
    # SIGTERM'd operator lingered past its cleanup. Frozen objects are not collected.
    gc.freeze()


@kopf.on.probe(id="targets")
async def targets_probe(memo: kopf.Memo, **_: Any) -> int:
    runtime = _runtime(memo)
    return runtime.targets.running if runtime is not None else 0


# --- what it reads: GrpcTargets ---------------------------------------------------------------


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
    runtime = _runtime(memo)
    if runtime is None:
        return
    key = (namespace or "", name)
    if not runtime.settings.watches(key[0]):
        if key not in runtime.ignored:  # kopf's --namespace and ours differ: once per target
            runtime.ignored.add(key)
            _log.warning(
                "GrpcTarget %s/%s ignored: namespace %r is not in KUBERESOLVER_WATCH_NAMESPACES "
                "(%s); give kopf the same --namespace arguments",
                key[0],
                name,
                key[0],
                ",".join(runtime.settings.watch_namespaces),
            )
        return
    if type == "DELETED":
        runtime.targets.forget(key, uid)
        runtime.metrics.forget_target(key[0], name)
        if runtime.xds is not None:
            runtime.xds.forget(key, uid)
    else:
        runtime.targets.observe(key, uid, plain(body))
        if runtime.xds is not None:
            runtime.xds.observe(key, uid, body)
