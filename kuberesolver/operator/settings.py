"""Operator settings, resolved in one place: argument, then environment variable, then default.

Every setting carries its unit in its name (the write budget, in its value).
The environment variables are:

``KUBERESOLVER_WRITE_BUDGET``
    Each target's ConfigMap writes, as ``BURST/WINDOW`` with a unit
    (default ``5/1500ms``): after a quiet period the first ``BURST`` changes
    are each written at once (a Pod added not ready, then Ready, is two
    prompt writes); a target that keeps changing is written once per
    ``WINDOW / BURST`` (300 ms by default), each write holding everything
    that came meanwhile, and the last change always lands. ``1/300ms`` is a
    fixed 300 ms window (leading edge); ``1/0ms`` writes every change.
``KUBERESOLVER_DEBOUNCE_MS``
    Deprecated: ``KUBERESOLVER_DEBOUNCE_MS=N`` means
    ``KUBERESOLVER_WRITE_BUDGET=1/Nms``, with a warning at startup; ignored
    when ``KUBERESOLVER_WRITE_BUDGET`` is set.
``KUBERESOLVER_STATUS_INTERVAL_MS``
    How often a target's status may be patched when only its counts, revision
    and last update time changed (default 30000): the ConfigMap is the feed,
    the status a summary. The first change after a quiet interval, and any
    change of a condition, the generation or the ConfigMap's name, is written
    at once; a status patch costs the apiserver as much as the ConfigMap write.
``KUBERESOLVER_METRICS_PORT``
    The port of the Prometheus endpoint; 0 turns it off (default 0).
``KUBERESOLVER_READY_PORT``
    The port of ``GET /readyz`` (the readiness and startup probes); 0 turns it
    off (default 0; the chart sets 8081). See
    :mod:`kuberesolver.operator.logic.readiness` for what ready means.
``KUBERESOLVER_RESYNC_S``
    How often each target is reconciled even without a change, which also
    repairs a ConfigMap edited by hand (default 300).
``KUBERESOLVER_LEASE_DURATION_S``
    How long the leader's ``coordination.k8s.io`` Lease holds without a
    renewal: the failover time after the leader dies without a clean exit is
    at most this plus two retries (default 8).
``KUBERESOLVER_LEASE_RETRY_S``
    How often every replica reads the Lease, and the leader renews it
    (default 2). The leader stops writing when it has not renewed for
    ``LEASE_DURATION_S - LEASE_RETRY_S``, before any other replica may take over.
``KUBERESOLVER_LEASE_NAME`` / ``KUBERESOLVER_LEASE_NAMESPACE``
    The Lease (default ``kuberesolver-operator`` in ``kuberesolver-system``).
``KUBERESOLVER_IDENTITY``
    This replica's name in the Lease and on its Events (default: host name
    and process id; the Deployment passes the Pod's name).
``KUBERESOLVER_WATCH_NAMESPACES``
    Namespaced mode: the namespaces whose GrpcTargets, Services,
    EndpointSlices and Pods the operator lists and watches, comma-separated
    (default empty: every namespace, with cluster-wide watches). Every watch
    and list is then per namespace, so namespaced RBAC (a Role in each) is
    enough. kopf must be run with the same ``--namespace=NS`` arguments
    instead of ``--all-namespaces``; the operator refuses to start when one
    is namespaced and the other not.
``KUBERESOLVER_RENDER_WORKERS``
    How many worker processes render the GrpcTargets' templates (default 2).
    Templates never run in the operator's own process (:mod:`.sandbox.render_pool`).
``KUBERESOLVER_RENDER_CPU_S``
    The CPU time one render may use, in whole seconds (default 2); past it
    the worker is killed and the target gets ``Rendered=False, RenderTimeout``.
``KUBERESOLVER_RENDER_MEMORY_MIB``
    A render worker's address space (default 256); past it the render fails
    with ``RenderMemoryLimit``.
``KUBERESOLVER_RENDER_TIMEOUT_MS``
    The wall-clock time one render may take (default 5000; ``RenderTimeout``).
``KUBERESOLVER_LOG_FORMAT``
    ``plain``, ``full`` or ``json``: kopf's ``kopf run --log-format``, for
    where the command line is fixed; set, it wins over the flag. Either way
    kopf's lines and the operator's own are in that format (one JSON object a
    line with ``json``). Unset: as the command line says (default ``full``).
"""

from __future__ import annotations

import logging
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from kuberesolver.core.names import is_dns1123_label

__all__ = [
    "DEFAULTS",
    "LOG_FORMATS",
    "Settings",
    "SettingsError",
    "WriteBudget",
    "log_format",
    "watch_namespaces",
]

_log = logging.getLogger("kuberesolver.operator")

_MAX_WINDOW_MS: Final = 3_600_000
LOG_FORMATS: Final = ("plain", "full", "json")
"""kopf's ``--log-format`` choices."""
_BUDGET: Final = re.compile(r"\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)\s*(ms|s)\s*")


@dataclass(frozen=True, slots=True)
class WriteBudget:
    """``burst`` runs at once after a quiet period, and ``burst`` per ``window_ms`` on average.

    Written ``"5/1500ms"`` (or ``"5/1.5s"``): a bucket of 5 tokens, refilled
    one every 300 ms. ``"1/300ms"`` is a fixed 300 ms window with a leading
    edge; ``window_ms=0`` never waits. Over any stretch of ``D`` ms a target
    runs at most ``burst + D * burst / window_ms`` times.
    """

    burst: int
    window_ms: float

    def __post_init__(self) -> None:
        if self.burst < 1:
            raise ValueError(f"{str(self)!r}: the burst must be at least 1")
        if self.window_ms < 0:
            raise ValueError(f"{str(self)!r}: the window must not be negative")

    def __str__(self) -> str:
        return f"{self.burst}/{self.window_ms:g}ms"

    @property
    def interval_s(self) -> float:
        """The refill time of one token (the spacing of runs while a target stays hot)."""
        return self.window_ms / 1000.0 / self.burst

    @classmethod
    def parse(cls, text: str) -> WriteBudget:
        """``"BURST/WINDOWms"`` or ``"BURST/WINDOWs"``; the unit is required."""
        m = _BUDGET.fullmatch(text)
        if m is None:
            raise ValueError(
                f"{text!r}: expected BURST/WINDOW with a unit, e.g. '5/1500ms' or '1/300ms'"
            )
        window = float(m.group(2)) * (1000.0 if m.group(3) == "s" else 1.0)
        return cls(int(m.group(1)), window)


class SettingsError(ValueError):
    """An environment variable holds a value that cannot be used."""


@dataclass(frozen=True, slots=True)
class Settings:
    write_budget: WriteBudget = field(default_factory=lambda: WriteBudget(5, 1500))
    status_interval_ms: int = 30_000
    metrics_port: int = 0
    ready_port: int = 0
    resync_s: float = 300.0
    lease_duration_s: int = 8
    lease_retry_s: int = 2
    lease_name: str = "kuberesolver-operator"
    lease_namespace: str = "kuberesolver-system"
    identity: str = ""
    render_workers: int = 2
    render_cpu_s: int = 2
    render_memory_mib: int = 256
    render_timeout_ms: int = 5000
    watch_namespaces: tuple[str, ...] = ()
    """Namespaced mode: the only namespaces watched (sorted); empty: every namespace."""
    log_format: str = ""
    """``plain``, ``full`` or ``json``; empty: as ``kopf run --log-format`` says."""

    def watches(self, namespace: str) -> bool:
        """Whether ``namespace`` is one this operator lists and watches."""
        return not self.watch_namespaces or namespace in self.watch_namespaces

    @property
    def status_interval_s(self) -> float:
        return self.status_interval_ms / 1000.0

    @property
    def lease_renew_deadline_s(self) -> float:
        """How long the leader keeps writing without a successful renewal."""
        return float(self.lease_duration_s - self.lease_retry_s)

    @classmethod
    def resolve(
        cls,
        *,
        write_budget: WriteBudget | str | None = None,
        debounce_ms: int | None = None,
        status_interval_ms: int | None = None,
        metrics_port: int | None = None,
        ready_port: int | None = None,
        resync_s: float | None = None,
        lease_duration_s: int | None = None,
        lease_retry_s: int | None = None,
        lease_name: str | None = None,
        lease_namespace: str | None = None,
        identity: str | None = None,
        render_workers: int | None = None,
        render_cpu_s: int | None = None,
        render_memory_mib: int | None = None,
        render_timeout_ms: int | None = None,
        watch_namespaces: str | None = None,
        log_format: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Settings:
        """Arguments win, then ``KUBERESOLVER_*`` variables, then :data:`DEFAULTS`.

        ``debounce_ms`` (``KUBERESOLVER_DEBOUNCE_MS``) is the deprecated
        spelling of ``write_budget=f"1/{debounce_ms}ms"``.
        """
        env = os.environ if environ is None else environ
        d = DEFAULTS
        duration = _pick(
            lease_duration_s, env, "KUBERESOLVER_LEASE_DURATION_S", d.lease_duration_s, 2, 3600
        )
        retry = _pick(lease_retry_s, env, "KUBERESOLVER_LEASE_RETRY_S", d.lease_retry_s, 1, 600)
        if duration < 2 * retry:
            raise SettingsError(
                f"KUBERESOLVER_LEASE_DURATION_S={duration} must be at least twice "
                f"KUBERESOLVER_LEASE_RETRY_S={retry}"
            )
        budget = _budget(write_budget, debounce_ms, env, d.write_budget)
        port = _pick(metrics_port, env, "KUBERESOLVER_METRICS_PORT", d.metrics_port, 0, 65535)
        ready = _pick(ready_port, env, "KUBERESOLVER_READY_PORT", d.ready_port, 0, 65535)
        resync = _pick(resync_s, env, "KUBERESOLVER_RESYNC_S", int(d.resync_s), 1, 86400)
        return cls(
            write_budget=budget,
            status_interval_ms=_pick(
                status_interval_ms,
                env,
                "KUBERESOLVER_STATUS_INTERVAL_MS",
                d.status_interval_ms,
                0,
                3_600_000,
            ),
            metrics_port=port,
            ready_port=ready,
            resync_s=float(resync),
            lease_duration_s=duration,
            lease_retry_s=retry,
            lease_name=_text(lease_name, env, "KUBERESOLVER_LEASE_NAME", d.lease_name),
            lease_namespace=_text(
                lease_namespace, env, "KUBERESOLVER_LEASE_NAMESPACE", d.lease_namespace
            ),
            identity=_text(
                identity, env, "KUBERESOLVER_IDENTITY", f"{socket.gethostname()}-{os.getpid()}"
            ),
            render_workers=_pick(
                render_workers, env, "KUBERESOLVER_RENDER_WORKERS", d.render_workers, 1, 64
            ),
            render_cpu_s=_pick(
                render_cpu_s, env, "KUBERESOLVER_RENDER_CPU_S", d.render_cpu_s, 1, 3600
            ),
            render_memory_mib=_pick(
                render_memory_mib,
                env,
                "KUBERESOLVER_RENDER_MEMORY_MIB",
                d.render_memory_mib,
                64,
                1 << 20,
            ),
            render_timeout_ms=_pick(
                render_timeout_ms,
                env,
                "KUBERESOLVER_RENDER_TIMEOUT_MS",
                d.render_timeout_ms,
                100,
                3_600_000,
            ),
            watch_namespaces=_namespaces(watch_namespaces, env),
            log_format=_log_format(log_format, env),
        )


DEFAULTS: Final = Settings()
"""The defaults, in one place (``identity`` is filled in by :meth:`Settings.resolve`)."""


def log_format(environ: Mapping[str, str] | None = None) -> str:
    """``KUBERESOLVER_LOG_FORMAT``, lower-cased: one of :data:`LOG_FORMATS`, or empty."""
    return _log_format(None, os.environ if environ is None else environ)


def _log_format(arg: str | None, env: Mapping[str, str]) -> str:
    raw = arg if arg is not None else env.get("KUBERESOLVER_LOG_FORMAT", "")
    value = raw.strip().lower()
    if value and value not in LOG_FORMATS:
        raise SettingsError(
            f"KUBERESOLVER_LOG_FORMAT={raw!r} is not one of {', '.join(LOG_FORMATS)}"
        )
    return value


def _pick(
    arg: float | None, env: Mapping[str, str], name: str, default: int, lo: int, hi: int
) -> int:
    if arg is not None:
        value = arg
    else:
        raw = env.get(name, "").strip()
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise SettingsError(f"{name}={raw!r}: not a number") from None
    if value != int(value):
        raise SettingsError(f"{name}={value!r}: must be a whole number")
    if not lo <= value <= hi:
        raise SettingsError(f"{name}={value!r}: must be in {lo}..{hi}")
    return int(value)


def _budget(
    arg: WriteBudget | str | None,
    debounce_ms: int | None,
    env: Mapping[str, str],
    default: WriteBudget,
) -> WriteBudget:
    name = "KUBERESOLVER_WRITE_BUDGET"
    if isinstance(arg, WriteBudget):
        budget = arg
    else:
        raw = arg if arg is not None else env.get(name, "").strip()
        old = "KUBERESOLVER_DEBOUNCE_MS"
        if not raw and (debounce_ms is not None or env.get(old, "").strip()):
            window = _pick(debounce_ms, env, old, 0, 0, 60000)
            raw = f"1/{window}ms"
            _log.warning("%s is deprecated: it means %s=%s; set that instead", old, name, raw)
        elif raw and env.get(old, "").strip():
            _log.warning("%s is deprecated and ignored: %s=%s is set", old, name, raw)
        if not raw:
            return default
        try:
            budget = WriteBudget.parse(raw)
        except ValueError as exc:
            raise SettingsError(f"{name}={exc}") from None
    if budget.burst > 1000 or budget.window_ms > _MAX_WINDOW_MS:
        raise SettingsError(
            f"{name}={str(budget)!r}: the burst must be at most 1000 "
            f"and the window at most {_MAX_WINDOW_MS} ms"
        )
    return budget


def watch_namespaces(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """``KUBERESOLVER_WATCH_NAMESPACES``, sorted and without repeats (:class:`SettingsError`
    if a name is not a namespace name)."""
    return _namespaces(None, os.environ if environ is None else environ)


def _namespaces(arg: str | None, env: Mapping[str, str]) -> tuple[str, ...]:
    name = "KUBERESOLVER_WATCH_NAMESPACES"
    raw = arg if arg is not None else env.get(name, "")
    names = {part.strip() for part in raw.split(",") if part.strip()}
    bad = sorted(n for n in names if not is_dns1123_label(n))
    if bad:
        raise SettingsError(
            f"{name}={raw!r}: {', '.join(repr(b) for b in bad)} is not a namespace name "
            "(a DNS-1123 label; patterns are not supported)"
        )
    return tuple(sorted(names))


def _text(arg: str | None, env: Mapping[str, str], name: str, default: str) -> str:
    value = arg if arg is not None else (env.get(name, "").strip() or default)
    if not value or len(value) > 253:
        raise SettingsError(f"{name}={value!r}: must be 1..253 characters")
    return value
