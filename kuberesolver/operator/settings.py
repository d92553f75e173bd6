"""Operator settings, resolved in one place: argument, then environment variable, then default.

Every setting carries its unit in its name. The environment variables are:

``KUBERESOLVER_DEBOUNCE_MS``
    The coalescing window: at most one ConfigMap write per target per window
    (default 300).
``KUBERESOLVER_METRICS_PORT``
    The port of the Prometheus endpoint; 0 turns it off (default 0).
``KUBERESOLVER_RESYNC_S``
    How often each target is reconciled even without a change, which also
    repairs a ConfigMap edited by hand (default 300).
``KUBERESOLVER_PEERING_PRIORITY``
    This replica's kopf peering priority. Replicas of one Deployment must
    differ, so the default is a random number.
``KUBERESOLVER_PEERING_LIFETIME_S``
    How long a silent peer is still believed alive: the failover time after
    a replica dies without a clean exit (default 60, kopf's own default).
``KUBERESOLVER_RENDER_WORKERS``
    How many worker processes render the GrpcTargets' templates (default 2).
    Templates never run in the operator's own process (:mod:`.render_pool`).
``KUBERESOLVER_RENDER_CPU_S``
    The CPU time one render may use, in whole seconds (default 2); past it
    the worker is killed and the target gets ``Rendered=False, RenderTimeout``.
``KUBERESOLVER_RENDER_MEMORY_MIB``
    A render worker's address space (default 256); past it the render fails
    with ``RenderMemoryLimit``.
``KUBERESOLVER_RENDER_TIMEOUT_MS``
    The wall-clock time one render may take (default 5000; ``RenderTimeout``).
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Settings", "SettingsError"]


class SettingsError(ValueError):
    """An environment variable holds a value that cannot be used."""


@dataclass(frozen=True, slots=True)
class Settings:
    debounce_ms: int = 300
    metrics_port: int = 0
    resync_s: float = 300.0
    peering_priority: int = 0
    peering_lifetime_s: int = 60
    render_workers: int = 2
    render_cpu_s: int = 2
    render_memory_mib: int = 256
    render_timeout_ms: int = 5000

    @property
    def debounce_s(self) -> float:
        return self.debounce_ms / 1000.0

    @classmethod
    def resolve(
        cls,
        *,
        debounce_ms: int | None = None,
        metrics_port: int | None = None,
        resync_s: float | None = None,
        peering_priority: int | None = None,
        peering_lifetime_s: int | None = None,
        render_workers: int | None = None,
        render_cpu_s: int | None = None,
        render_memory_mib: int | None = None,
        render_timeout_ms: int | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Settings:
        """Arguments win, then ``KUBERESOLVER_*`` variables, then the defaults."""
        env = os.environ if environ is None else environ
        return cls(
            debounce_ms=_pick(debounce_ms, env, "KUBERESOLVER_DEBOUNCE_MS", 300, 0, 60_000),
            metrics_port=_pick(metrics_port, env, "KUBERESOLVER_METRICS_PORT", 0, 0, 65535),
            resync_s=float(_pick(resync_s, env, "KUBERESOLVER_RESYNC_S", 300, 1, 86_400)),
            peering_priority=_pick(
                peering_priority,
                env,
                "KUBERESOLVER_PEERING_PRIORITY",
                random.randint(1, 2**31 - 1),
                -(2**31),
                2**31 - 1,
            ),
            peering_lifetime_s=_pick(
                peering_lifetime_s, env, "KUBERESOLVER_PEERING_LIFETIME_S", 60, 2, 3600
            ),
            render_workers=_pick(render_workers, env, "KUBERESOLVER_RENDER_WORKERS", 2, 1, 64),
            render_cpu_s=_pick(render_cpu_s, env, "KUBERESOLVER_RENDER_CPU_S", 2, 1, 3600),
            render_memory_mib=_pick(
                render_memory_mib, env, "KUBERESOLVER_RENDER_MEMORY_MIB", 256, 64, 1 << 20
            ),
            render_timeout_ms=_pick(
                render_timeout_ms, env, "KUBERESOLVER_RENDER_TIMEOUT_MS", 5000, 100, 3_600_000
            ),
        )


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
