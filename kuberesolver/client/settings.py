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
  keepalive interval and the time it waits for the answer
  (``grpc.keepalive_time_ms``, ``grpc.keepalive_timeout_ms`` and
  ``grpc.http2.ping_timeout_ms``: grpcio 1.85 closes a connection whose ping
  goes unanswered only after the last, 60 s by default), so that a pod that
  went silent fails over and a call stuck on it ends within twice this value;
  default 4000, 0 leaves grpc's defaults (none). grpc sends these pings only
  while calls are active, and at most two while it sends no data: measured,
  servers with default settings accept them (no GOAWAY "too_many_pings").
- ``outlier_detection`` (``KUBERESOLVER_OUTLIER_DETECTION``): eject endpoints
  whose calls fail (gRFC A50, with
  :data:`~kuberesolver.core.service_config.OUTLIER_DEFAULTS`) when the snapshot
  sets no ``outlierDetection`` of its own; default on.
- ``source`` (``KUBERESOLVER_SOURCE``): ``file``, ``api`` (direct mode) or
  ``operator`` (the operator's xDS, :mod:`kuberesolver.client.sources.operator`);
  unset means the rule in :mod:`kuberesolver.client.sources.api.builder`.
- ``strict`` (``KUBERESOLVER_STRICT``): raise at construction when the target's
  snapshot is not mounted, default off: the channel is made, its calls wait
  (``wait_for_ready``) or fail with UNAVAILABLE naming the missing file, and it
  follows the file once it appears (:mod:`kuberesolver.client.sources.awaited`).

``source`` and ``lb_policy`` are ``Literal`` types (:data:`SourceName`,
:data:`~kuberesolver.core.policies.LoadBalancing`), checked by mypy; at run time a
wrong value is a ``ValueError``.

``debounce_ms`` and ``poll_interval_ms`` belong to the watch of a snapshot
directory, which every channel of that directory in the process shares: the
first channel's values hold, and a later channel that asks for others gets a
warning (once per directory).

The channel constructors take these as keywords (:class:`ChannelArgs`), plus
``namespace`` (for a target without one), ``server_name`` (the TLS name
and ``:authority``, default the snapshot's ``serverName``) and ``registry``
(where the client's Prometheus metrics go, :mod:`kuberesolver.client.metrics`;
none by default).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, Protocol, TypedDict

from kuberesolver.core.policies import DEFAULT_MAX_ATTEMPTS, LoadBalancing

__all__ = [
    "DEFAULT_DEBOUNCE_MS",
    "DEFAULT_KEEPALIVE_MS",
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
    "ENV_OUTLIER_DETECTION",
    "ENV_PICK_METRICS",
    "ENV_POLL_INTERVAL_MS",
    "ENV_SOURCE",
    "ENV_STRICT",
    "ENV_ZONE",
    "WATCH_STEP_MS",
    "ChannelArgs",
    "MetricsRegistry",
    "Settings",
    "SourceName",
    "default_namespace",
    "resolve",
    "resolve_from",
]

DEFAULT_SNAPSHOT_DIR: Final = "/var/run/kuberesolver"
DEFAULT_NAMESPACE_FILE: Final = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
DEFAULT_NAMESPACE: Final = "default"
DEFAULT_DEBOUNCE_MS: Final = 50
DEFAULT_POLL_INTERVAL_MS: Final = 5000
WATCH_STEP_MS: Final = 1
"""How long watchfiles waits for more events after one before it yields them.

Every wait costs about twice this before a change is seen (measured: 3.8 ms
at 1, 5.8 ms at 2). A yield in the middle of kubelet's swap is harmless: the
snapshot is read through the ``..data`` link, whole, and the rest of the swap
is one more event."""

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
ENV_OUTLIER_DETECTION: Final = "KUBERESOLVER_OUTLIER_DETECTION"
DEFAULT_KEEPALIVE_MS: Final = 4000
ENV_SOURCE: Final = "KUBERESOLVER_SOURCE"
ENV_STRICT: Final = "KUBERESOLVER_STRICT"

SourceName = Literal["file", "api", "operator"]
"""Where a channel's endpoints come from (see :mod:`kuberesolver.client.sources.api.builder`)."""


class MetricsRegistry(Protocol):
    """What ``registry=`` takes: a ``prometheus_client.CollectorRegistry``."""

    def register(self, collector: Any) -> None: ...

    def unregister(self, collector: Any) -> None: ...


_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})


class ChannelArgs(TypedDict, total=False):
    """The keywords every channel constructor takes (sync and aio, insecure and secure)."""

    snapshot_dir: str | os.PathLike[str] | None
    namespace: str | None
    zone: str | None
    lb_policy: LoadBalancing | None
    max_attempts: int | None
    server_name: str | None
    """The TLS name and ``:authority``; default the snapshot's ``serverName``."""
    authority: str | None
    """Deprecated: the old name of ``server_name`` on the insecure constructors."""
    debounce_ms: int | None
    poll_interval_ms: int | None
    namespace_file: str | os.PathLike[str] | None
    pick_metrics: bool | None
    source: SourceName | None
    """``"file"``, ``"api"`` (direct mode) or ``"operator"`` (the operator's xDS); see
    :mod:`kuberesolver.client.sources.api.builder`."""
    cluster_ip_fallback: bool | None
    """Send calls through the Service's ClusterIPs while no listed endpoint answers."""
    failover_timeout_ms: int | None
    keepalive_ms: int | None
    outlier_detection: bool | None
    """Eject endpoints whose calls fail when the snapshot sets no outlier detection."""
    strict: bool | None
    """Raise at construction when the snapshot is not mounted (default: wait for it)."""
    registry: MetricsRegistry | None
    """The ``prometheus_client.CollectorRegistry`` the target's metrics go to; none by
    default (pass ``prometheus_client.REGISTRY`` for the global one)."""


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
    keepalive_ms: int = DEFAULT_KEEPALIVE_MS
    outlier_detection: bool = True
    source: str | None = None
    strict: bool = False

    def channel_options(self) -> list[tuple[str, int]]:
        """The grpc channel options these settings stand for (user options win)."""
        options = [("grpc.priority_failover_timeout_ms", self.failover_timeout_ms)]
        if self.keepalive_ms:
            options += [
                ("grpc.keepalive_time_ms", self.keepalive_ms),
                ("grpc.keepalive_timeout_ms", self.keepalive_ms),
                ("grpc.http2.ping_timeout_ms", self.keepalive_ms),
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
    outlier_detection: bool | None = None,
    source: str | None = None,
    strict: bool | None = None,
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
        else _env_int(ENV_KEEPALIVE_MS, DEFAULT_KEEPALIVE_MS, 0),
        outlier_detection=bool(outlier_detection)
        if outlier_detection is not None
        else _env_bool(ENV_OUTLIER_DETECTION, True),
        source=(source if source is not None else os.environ.get(ENV_SOURCE, "").strip()) or None,
        strict=bool(strict) if strict is not None else _env_bool(ENV_STRICT, False),
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
