"""Every client setting, resolved in one place: argument, then environment variable, then default.

- ``snapshot_dir`` (``KUBERESOLVER_DIR``): the snapshot root, default
  ``/var/run/kuberesolver``.
- ``zone`` (``KUBERESOLVER_ZONE``): the client's zone; none by default (zone
  preference is opt-in).
- ``lb_policy`` (``KUBERESOLVER_LB_POLICY``): ``round_robin``,
  ``weighted_round_robin`` or ``pick_first``; default: the snapshot's
  service config, else ``round_robin``.
- ``debounce_ms`` (``KUBERESOLVER_DEBOUNCE_MS``): the longest batch of file
  events, default 50 (a kubelet swap is applied about 2 ms after it is seen).
- ``poll_interval_ms`` (``KUBERESOLVER_POLL_INTERVAL_MS``): re-check without
  events, default 5000.
- ``max_attempts`` (``KUBERESOLVER_MAX_ATTEMPTS``): tries of a call that fails
  with UNAVAILABLE, default 3 (grpc caps it at 5; 1 disables retries).
- ``namespace_file`` (``KUBERESOLVER_NAMESPACE_FILE``): where the pod's own
  namespace is read, default the service-account namespace file.
- ``pick_metrics`` (``KUBERESOLVER_PICK_METRICS``): export the calls per
  endpoint as Prometheus metrics (see :mod:`kuberesolver.client.metrics`), default
  off; the variable takes ``1``/``true``/``yes``/``on`` or
  ``0``/``false``/``no``/``off``.
- ``cluster_ip_fallback`` (``KUBERESOLVER_CLUSTER_IP_FALLBACK``): when the
  snapshot carries the Service's ClusterIPs, send calls through them (and
  kube-proxy) while no listed endpoint can be reached, default on.
- ``failover_timeout_ms`` (``KUBERESOLVER_FAILOVER_TIMEOUT_MS``): how long grpc
  waits for a connecting priority before it tries the next one (the channel
  option ``grpc.priority_failover_timeout_ms``), default 1000 (grpc's own
  default, 10 s, makes calls wait out their deadlines).
- ``keepalive_ms`` (``KUBERESOLVER_KEEPALIVE_MS``): the client's HTTP/2
  keepalive interval and timeout (``grpc.keepalive_time_ms`` and
  ``grpc.keepalive_timeout_ms``), so that a pod that went silent fails over;
  default 10000, 0 leaves grpc's defaults (none). Servers answer pings faster
  than ``grpc.http2.min_ping_interval_without_data_ms`` (5 minutes by default)
  with GOAWAY once no data flows: set that server option to at most this value.
- ``source`` (``KUBERESOLVER_SOURCE``): ``file``, ``api`` (direct mode) or
  ``operator`` (the operator's xDS, :mod:`kuberesolver.client.sources.operator`);
  unset means the rule in :mod:`kuberesolver.client.sources.api.builder`.

``debounce_ms`` and ``poll_interval_ms`` belong to the watch of a snapshot
directory, which every channel of that directory in the process shares: the
first channel's values hold, and a later channel that asks for others gets a
warning (once per directory).

The channel constructors take these as keywords (:class:`ChannelArgs`), plus
``namespace`` (for a target without one) and ``server_name`` (the TLS name
and ``:authority``, default the snapshot's ``serverName``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypedDict

from kuberesolver.core.policies import DEFAULT_MAX_ATTEMPTS

__all__ = [
    "DEFAULT_DEBOUNCE_MS",
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_NAMESPACE",
    "DEFAULT_NAMESPACE_FILE",
    "DEFAULT_POLL_INTERVAL_MS",
    "DEFAULT_SNAPSHOT_DIR",
    "ENV_CLUSTER_IP_FALLBACK",
    "ENV_DEBOUNCE_MS",
    "ENV_DIR",
    "ENV_FAILOVER_TIMEOUT_MS",
    "ENV_KEEPALIVE_MS",
    "ENV_LB_POLICY",
    "ENV_MAX_ATTEMPTS",
    "ENV_NAMESPACE_FILE",
    "ENV_PICK_METRICS",
    "ENV_POLL_INTERVAL_MS",
    "ENV_SOURCE",
    "ENV_ZONE",
    "ChannelArgs",
    "Settings",
    "default_namespace",
    "resolve",
    "resolve_from",
]

DEFAULT_SNAPSHOT_DIR: Final = "/var/run/kuberesolver"
DEFAULT_NAMESPACE_FILE: Final = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
DEFAULT_NAMESPACE: Final = "default"
DEFAULT_DEBOUNCE_MS: Final = 50
DEFAULT_POLL_INTERVAL_MS: Final = 5000

ENV_DIR: Final = "KUBERESOLVER_DIR"
ENV_ZONE: Final = "KUBERESOLVER_ZONE"
ENV_LB_POLICY: Final = "KUBERESOLVER_LB_POLICY"
ENV_DEBOUNCE_MS: Final = "KUBERESOLVER_DEBOUNCE_MS"
ENV_POLL_INTERVAL_MS: Final = "KUBERESOLVER_POLL_INTERVAL_MS"
ENV_MAX_ATTEMPTS: Final = "KUBERESOLVER_MAX_ATTEMPTS"
ENV_NAMESPACE_FILE: Final = "KUBERESOLVER_NAMESPACE_FILE"
ENV_PICK_METRICS: Final = "KUBERESOLVER_PICK_METRICS"
ENV_CLUSTER_IP_FALLBACK: Final = "KUBERESOLVER_CLUSTER_IP_FALLBACK"
ENV_FAILOVER_TIMEOUT_MS: Final = "KUBERESOLVER_FAILOVER_TIMEOUT_MS"
ENV_KEEPALIVE_MS: Final = "KUBERESOLVER_KEEPALIVE_MS"
ENV_SOURCE: Final = "KUBERESOLVER_SOURCE"

_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})


class ChannelArgs(TypedDict, total=False):
    """The keywords every channel constructor takes (sync and aio, insecure and secure)."""

    snapshot_dir: str | os.PathLike[str] | None
    namespace: str | None
    zone: str | None
    lb_policy: str | None
    max_attempts: int | None
    server_name: str | None
    """The TLS name and ``:authority``; default the snapshot's ``serverName``."""
    authority: str | None
    """Deprecated: the old name of ``server_name`` on the insecure constructors."""
    debounce_ms: int | None
    poll_interval_ms: int | None
    namespace_file: str | os.PathLike[str] | None
    pick_metrics: bool | None
    source: str | None
    """``"file"``, ``"api"`` (direct mode) or ``"operator"`` (the operator's xDS); see
    :mod:`kuberesolver.client.sources.api.builder`."""
    cluster_ip_fallback: bool | None
    """Send calls through the Service's ClusterIPs while no listed endpoint answers."""
    failover_timeout_ms: int | None
    keepalive_ms: int | None


@dataclass(frozen=True, slots=True)
class Settings:
    """The resolved settings of one channel."""

    snapshot_dir: Path
    zone: str | None
    lb_policy: str | None
    debounce_ms: int
    poll_interval_ms: int
    max_attempts: int
    namespace_file: Path
    pick_metrics: bool = False
    cluster_ip_fallback: bool = True
    failover_timeout_ms: int = 1000
    keepalive_ms: int = 10_000
    source: str | None = None

    def channel_options(self) -> list[tuple[str, int]]:
        """The grpc channel options these settings stand for (user options win)."""
        options = [("grpc.priority_failover_timeout_ms", self.failover_timeout_ms)]
        if self.keepalive_ms:
            options += [
                ("grpc.keepalive_time_ms", self.keepalive_ms),
                ("grpc.keepalive_timeout_ms", self.keepalive_ms),
            ]
        return options


def _env_int(name: str, default: int, minimum: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise ValueError(f"{name}={value} must be at least {minimum}")
    return value


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ValueError(f"{name}={raw!r} is not a boolean (use 1/true/yes/on or 0/false/no/off)")


def _check(name: str, value: int, minimum: int) -> int:
    if value < minimum:
        raise ValueError(f"{name}={value} must be at least {minimum}")
    return value


def resolve(
    *,
    snapshot_dir: str | os.PathLike[str] | None = None,
    zone: str | None = None,
    lb_policy: str | None = None,
    debounce_ms: int | None = None,
    poll_interval_ms: int | None = None,
    max_attempts: int | None = None,
    namespace_file: str | os.PathLike[str] | None = None,
    pick_metrics: bool | None = None,
    cluster_ip_fallback: bool | None = None,
    failover_timeout_ms: int | None = None,
    keepalive_ms: int | None = None,
    source: str | None = None,
) -> Settings:
    """Resolve each setting: the argument if given, else its environment variable, else default."""
    return Settings(
        snapshot_dir=Path(
            snapshot_dir
            if snapshot_dir is not None
            else os.environ.get(ENV_DIR) or DEFAULT_SNAPSHOT_DIR
        ),
        zone=(zone if zone is not None else os.environ.get(ENV_ZONE, "").strip()) or None,
        lb_policy=(
            lb_policy if lb_policy is not None else os.environ.get(ENV_LB_POLICY, "").strip()
        )
        or None,
        debounce_ms=_check("debounce_ms", debounce_ms, 1)
        if debounce_ms is not None
        else _env_int(ENV_DEBOUNCE_MS, DEFAULT_DEBOUNCE_MS, 1),
        poll_interval_ms=_check("poll_interval_ms", poll_interval_ms, 10)
        if poll_interval_ms is not None
        else _env_int(ENV_POLL_INTERVAL_MS, DEFAULT_POLL_INTERVAL_MS, 10),
        max_attempts=_check("max_attempts", max_attempts, 1)
        if max_attempts is not None
        else _env_int(ENV_MAX_ATTEMPTS, DEFAULT_MAX_ATTEMPTS, 1),
        namespace_file=Path(
            namespace_file
            if namespace_file is not None
            else os.environ.get(ENV_NAMESPACE_FILE) or DEFAULT_NAMESPACE_FILE
        ),
        pick_metrics=bool(pick_metrics)
        if pick_metrics is not None
        else _env_bool(ENV_PICK_METRICS, False),
        cluster_ip_fallback=bool(cluster_ip_fallback)
        if cluster_ip_fallback is not None
        else _env_bool(ENV_CLUSTER_IP_FALLBACK, True),
        failover_timeout_ms=_check("failover_timeout_ms", failover_timeout_ms, 1)
        if failover_timeout_ms is not None
        else _env_int(ENV_FAILOVER_TIMEOUT_MS, 1000, 1),
        keepalive_ms=_check("keepalive_ms", keepalive_ms, 0)
        if keepalive_ms is not None
        else _env_int(ENV_KEEPALIVE_MS, 10_000, 0),
        source=(source if source is not None else os.environ.get(ENV_SOURCE, "").strip()) or None,
    )


def resolve_from(args: Mapping[str, Any]) -> Settings:
    """:func:`resolve` with those of ``args`` that are settings (a constructor's keywords
    also hold ``namespace`` and the TLS name, which are not)."""
    return resolve(**{k: v for k, v in args.items() if k in _SETTINGS})


_SETTINGS: Final = frozenset(resolve.__kwdefaults__ or ())


def default_namespace(namespace_file: str | os.PathLike[str] | None = None) -> str:
    """The pod's own namespace (from the service-account file), else ``default``."""
    path = Path(
        namespace_file
        if namespace_file is not None
        else os.environ.get(ENV_NAMESPACE_FILE) or DEFAULT_NAMESPACE_FILE
    )
    try:
        namespace = path.read_text(encoding="utf-8").strip()
    except OSError:
        return DEFAULT_NAMESPACE
    return namespace or DEFAULT_NAMESPACE
