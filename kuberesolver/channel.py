"""Sync channels: ``kubernetes:`` targets on real ``grpc.Channel`` objects.

How it works: the target's snapshot is located and watched (see
:mod:`kuberesolver.watch`); an in-process xDS server serves it to grpc's own
xDS client (see :mod:`kuberesolver._xds`); the channel handed back is grpc's
own channel on ``xds://kuberesolver/<name>``. Balancing, connectivity, retries
and the data path are grpc's C core: no Python runs per call.

Channels of the same target and options share one watch and one set of xDS
resources. The last channel to close stops the watch, and the last channel of
the process stops the xDS server.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import logging
import os
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import grpc
from grpc import _channel as _grpc_channel

from kuberesolver import metrics
from kuberesolver._xds.bootstrap import install_bootstrap
from kuberesolver._xds.resources import (
    AUTHORITY,
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ChannelSpec,
    build_resources,
    cluster_name,
    endpoints_name,
    listener_name,
    normalize_policy,
    unapplied_service_config_keys,
)
from kuberesolver._xds.server import AdsServer
from kuberesolver.settings import Settings, resolve
from kuberesolver.snapshot import Snapshot
from kuberesolver.target import ParsedTarget, parse_target
from kuberesolver.watch import SnapshotWatcher, check_snapshot, locate, read_snapshot

__all__ = ["Channel", "Lease", "insecure_channel", "secure_channel"]

log = logging.getLogger("kuberesolver")

ChannelOptions = Sequence[tuple[str, Any]]


@dataclass(eq=False)
class _WatchedDir:
    directory: Path
    target: ParsedTarget
    watcher: SnapshotWatcher
    label: str
    specs: dict[str, list[Any]] = field(default_factory=dict)  # name -> [spec, refs]
    unapplied: list[str] = field(default_factory=list)  # service-config keys last warned about


class Lease:
    """One channel's hold on a target: its xDS name, released exactly once."""

    def __init__(self, registry: _Registry, wd: _WatchedDir, spec: ChannelSpec) -> None:
        self._registry = registry
        self._wd = wd
        self.spec = spec
        self.target = wd.target
        self.directory = wd.directory
        self.xds_target = f"xds://{AUTHORITY}/{spec.name}"
        self._released = False
        self._lock = threading.Lock()
        self._untrack_picks: Callable[[], None] | None = None
        self.default_options: list[tuple[str, Any]] = []
        """Channel options from the settings (failover timer, keepalive); the user's win."""

    @property
    def label(self) -> str:
        """The target as metrics name it: ``service.namespace:port``."""
        return self._wd.label

    @property
    def snapshot(self) -> Snapshot:
        """The last good snapshot this channel follows."""
        return self._wd.watcher.snapshot

    @property
    def released(self) -> bool:
        return self._released

    def release(self) -> None:
        """Give the target back. Idempotent."""
        with self._lock:
            if self._released:
                return
            self._released = True
            untrack, self._untrack_picks = self._untrack_picks, None
        if untrack is not None:
            untrack()
        self._registry.release(self._wd, self.spec)

    def track_picks(self) -> None:
        """Export this target's calls per endpoint (see :mod:`kuberesolver.metrics`)."""
        wd = self._wd
        with self._lock:
            if self._released or self._untrack_picks is not None:
                return
            self._untrack_picks = metrics.track_picks(
                self.xds_target, wd.label, lambda: wd.watcher.snapshot
            )


class _Registry:
    """Process-wide: the xDS server, the watched directories and the served specs."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._ads: AdsServer | None = None
        self._dirs: dict[Path, _WatchedDir] = {}

    @property
    def ads(self) -> AdsServer | None:
        return self._ads

    def watched(self) -> list[Path]:
        with self._lock:
            return sorted(self._dirs)

    def acquire(
        self,
        target: str,
        *,
        namespace: str | None,
        settings: Settings,
    ) -> Lease:
        parsed = parse_target(target, namespace=namespace, namespace_file=settings.namespace_file)
        directory = locate(settings.snapshot_dir, parsed)
        with self._lock:
            wd = self._dirs.get(directory)
            snapshot = read_snapshot(directory) if wd is None else wd.watcher.snapshot
            check_snapshot(snapshot, parsed, str(directory))
            policy = normalize_policy(settings.lb_policy) if settings.lb_policy else ""
            digest = hashlib.sha1(str(directory.resolve()).encode(), usedforsecurity=False)
            spec = ChannelSpec(
                service=parsed.service,
                namespace=parsed.namespace,
                port=parsed.port or str(snapshot.target.port_name or snapshot.target.port_number),
                lb_policy=policy,
                zone=settings.zone,
                max_attempts=min(settings.max_attempts, 5),
                source=digest.hexdigest()[:8],
                cluster_ip_fallback=settings.cluster_ip_fallback,
            )
            ads = self._ensure_ads()
            if wd is None:
                label = f"{parsed.server_name}:{spec.port}"
                wd = _WatchedDir(directory=directory, target=parsed, watcher=None, label=label)  # type: ignore[arg-type]
                wd.watcher = SnapshotWatcher(
                    directory,
                    parsed,
                    snapshot,
                    on_change=functools.partial(self._apply, wd),
                    on_reject=functools.partial(_record_rejected, label),
                    debounce_ms=settings.debounce_ms,
                    poll_interval_ms=settings.poll_interval_ms,
                )
                self._dirs[directory] = wd
                _warn_unapplied(wd, snapshot)
                metrics.record_applied(label, snapshot)
                wd.watcher.start()
                log.info(
                    "following %s from %s: revision %d, %d ready of %d endpoints",
                    parsed.server_name,
                    directory,
                    snapshot.revision,
                    len(snapshot.ready_endpoints),
                    len(snapshot.endpoints),
                )
            entry = wd.specs.get(spec.name)
            if entry is None:
                wd.specs[spec.name] = [spec, 1]
                ads.publish(build_resources(spec, wd.watcher.snapshot))
            else:
                entry[1] += 1
            lease = Lease(self, wd, spec)
            lease.default_options = settings.channel_options()
            return lease

    def _ensure_ads(self) -> AdsServer:
        if self._ads is None:
            ads = AdsServer()
            ads.on_idle = self._on_ads_idle
            ads.start()
            try:
                install_bootstrap(ads.uri)
            except BaseException:
                ads.close()
                raise
            self._ads = ads
            atexit.register(self.shutdown)
        elif not self._ads.running:
            self._ads.start()
        return self._ads

    def _apply(self, wd: _WatchedDir, snapshot: Snapshot) -> None:
        with self._lock:
            specs = [entry[0] for entry in wd.specs.values()]
            ads = self._ads
        if ads is None:
            return
        for spec in specs:
            ads.publish(build_resources(spec, snapshot))
        _warn_unapplied(wd, snapshot)
        metrics.record_applied(wd.label, snapshot)
        log.info(
            "%s: revision %d applied, %d ready of %d endpoints",
            wd.label,
            snapshot.revision,
            len(snapshot.ready_endpoints),
            len(snapshot.endpoints),
        )

    def release(self, wd: _WatchedDir, spec: ChannelSpec) -> None:
        stop_watcher = False
        with self._lock:
            entry = wd.specs.get(spec.name)
            if entry is not None:
                entry[1] -= 1
                if entry[1] <= 0:
                    del wd.specs[spec.name]
                    if self._ads is not None:
                        self._ads.remove(
                            {
                                LISTENER_TYPE: [listener_name(spec.name)],
                                CLUSTER_TYPE: [cluster_name(spec.name)],
                                ENDPOINT_TYPE: [endpoints_name(spec.name)],
                            }
                        )
            if not wd.specs and self._dirs.get(wd.directory) is wd:
                del self._dirs[wd.directory]
                stop_watcher = True
        if stop_watcher:
            wd.watcher.stop()
        self._maybe_stop_ads()

    def _maybe_stop_ads(self) -> None:
        """Stop the xDS server once no channel is left and grpc's xDS clients hung up.

        Stopping it while grpc still holds an ADS stream would put grpc's
        connection to it into reconnect backoff, and the next channel's first
        calls would fail while it lasts.
        """
        with self._lock:
            ads = self._ads
            if self._dirs or ads is None or not ads.running or ads.stream_count:
                return
            ads.stop()
        log.debug("no channels left: xDS server stopped")

    def _on_ads_idle(self) -> None:
        # runs on a server thread, which must not wait for the server to stop
        threading.Thread(
            target=self._maybe_stop_ads, name="kuberesolver-ads-stop", daemon=True
        ).start()

    def shutdown(self) -> None:
        """Stop every watch and the xDS server (at exit)."""
        with self._lock:
            dirs = list(self._dirs.values())
            self._dirs.clear()
            ads, self._ads = self._ads, None
        for wd in dirs:
            wd.watcher.stop()
        if ads is not None:
            ads.close()


_registry = _Registry()


def _release_on_close(channel: object, lease: Lease) -> Callable[[], None]:
    """A callable that releases ``lease`` once: on close(), or when ``channel`` is collected.

    A channel collected without close() is released on a short-lived thread:
    the garbage collector may run while this thread holds the registry lock.
    """
    finalizer = weakref.finalize(channel, _release_collected, lease)

    def release() -> None:
        if finalizer.detach() is not None:
            lease.release()

    return release


def _release_collected(lease: Lease) -> None:
    log.debug("a channel for %s was collected without close()", lease.target)
    try:
        threading.Thread(target=lease.release, name="kuberesolver-release", daemon=True).start()
    except RuntimeError:  # interpreter shutdown: no new threads
        lease.release()


def _warn_unapplied(wd: _WatchedDir, snapshot: Snapshot) -> None:
    """Say once per change when the snapshot's service config asks for more than the policy."""
    keys = unapplied_service_config_keys(snapshot.service_config)
    if keys == wd.unapplied:
        return
    wd.unapplied = keys
    if keys:
        log.warning(
            "%s: revision %d: serviceConfig keys %s are not applied by this client "
            "(only the load-balancing policy is); set timeouts and retries on the calls",
            wd.label,
            snapshot.revision,
            ", ".join(keys),
        )


def _record_rejected(label: str, _problem: str) -> None:
    metrics.record_rejected(label)


def registry() -> _Registry:
    """The process-wide registry (for tests and ``inspect``)."""
    return _registry


def _channel_options(
    options: ChannelOptions | None,
    server_name: str,
    secure: bool,
    defaults: ChannelOptions = (),
) -> list[tuple[str, Any]]:
    merged = list(options or ())
    keys = {key for key, _ in merged}
    merged += [(key, value) for key, value in defaults if key not in keys]
    if "grpc.default_authority" not in keys:
        merged.append(("grpc.default_authority", server_name))
    if secure and "grpc.ssl_target_name_override" not in keys:
        merged.append(("grpc.ssl_target_name_override", server_name))
    return merged


def _lease(
    target: str,
    *,
    snapshot_dir: str | os.PathLike[str] | None,
    namespace: str | None,
    zone: str | None,
    lb_policy: str | None,
    max_attempts: int | None,
    debounce_ms: int | None,
    poll_interval_ms: int | None,
    namespace_file: str | os.PathLike[str] | None,
    pick_metrics: bool | None = None,
    cluster_ip_fallback: bool | None = None,
    failover_timeout_ms: int | None = None,
    keepalive_ms: int | None = None,
) -> Lease:
    settings = resolve(
        snapshot_dir=snapshot_dir,
        zone=zone,
        lb_policy=lb_policy,
        max_attempts=max_attempts,
        debounce_ms=debounce_ms,
        poll_interval_ms=poll_interval_ms,
        namespace_file=namespace_file,
        pick_metrics=pick_metrics,
        cluster_ip_fallback=cluster_ip_fallback,
        failover_timeout_ms=failover_timeout_ms,
        keepalive_ms=keepalive_ms,
    )
    lease = _registry.acquire(target, namespace=namespace, settings=settings)
    if settings.pick_metrics:
        lease.track_picks()
    return lease


class Channel(_grpc_channel.Channel):  # type: ignore[misc]
    """grpc's own sync channel on the xDS target, releasing the watch on close."""

    def __init__(
        self,
        lease: Lease,
        options: ChannelOptions | None,
        credentials: grpc.ChannelCredentials | None,
        compression: grpc.Compression | None,
        server_name: str | None,
    ) -> None:
        name = server_name or lease.snapshot.server_name or lease.target.server_name
        super().__init__(
            lease.xds_target,
            _channel_options(options, name, credentials is not None, lease.default_options),
            None if credentials is None else credentials._credentials,
            compression,
        )
        self.kuberesolver_lease = lease
        self._kuberesolver_release = _release_on_close(self, lease)

    @property
    def snapshot(self) -> Snapshot:
        """The last good snapshot this channel follows."""
        return self.kuberesolver_lease.snapshot

    def close(self) -> None:
        """Close the channel and release its watch. Idempotent."""
        super().close()
        self._kuberesolver_release()

    def __exit__(self, exc_type: object, exc_val: object, exc_tb: object) -> Literal[False]:
        self.close()
        return False


def insecure_channel(
    target: str,
    options: ChannelOptions | None = None,
    compression: grpc.Compression | None = None,
    *,
    snapshot_dir: str | os.PathLike[str] | None = None,
    namespace: str | None = None,
    zone: str | None = None,
    lb_policy: str | None = None,
    max_attempts: int | None = None,
    authority: str | None = None,
    debounce_ms: int | None = None,
    poll_interval_ms: int | None = None,
    namespace_file: str | os.PathLike[str] | None = None,
    pick_metrics: bool | None = None,
    cluster_ip_fallback: bool | None = None,
    failover_timeout_ms: int | None = None,
    keepalive_ms: int | None = None,
) -> grpc.Channel:
    """Like ``grpc.insecure_channel``, for a ``kubernetes:`` target.

    Calls are balanced across the ready endpoints of the target's snapshot and
    follow its changes. ``authority`` overrides ``:authority`` (default
    ``service.namespace``). ``pick_metrics=True`` exports the calls per
    endpoint to Prometheus (:mod:`kuberesolver.metrics`). See
    :mod:`kuberesolver.settings` for the rest.
    """
    lease = _lease(
        target,
        snapshot_dir=snapshot_dir,
        namespace=namespace,
        zone=zone,
        lb_policy=lb_policy,
        max_attempts=max_attempts,
        debounce_ms=debounce_ms,
        poll_interval_ms=poll_interval_ms,
        namespace_file=namespace_file,
        pick_metrics=pick_metrics,
        cluster_ip_fallback=cluster_ip_fallback,
        failover_timeout_ms=failover_timeout_ms,
        keepalive_ms=keepalive_ms,
    )
    try:
        return Channel(lease, options, None, compression, authority)
    except BaseException:
        lease.release()
        raise


def secure_channel(
    target: str,
    credentials: grpc.ChannelCredentials,
    options: ChannelOptions | None = None,
    compression: grpc.Compression | None = None,
    *,
    snapshot_dir: str | os.PathLike[str] | None = None,
    namespace: str | None = None,
    zone: str | None = None,
    lb_policy: str | None = None,
    max_attempts: int | None = None,
    server_name: str | None = None,
    debounce_ms: int | None = None,
    poll_interval_ms: int | None = None,
    namespace_file: str | os.PathLike[str] | None = None,
    pick_metrics: bool | None = None,
    cluster_ip_fallback: bool | None = None,
    failover_timeout_ms: int | None = None,
    keepalive_ms: int | None = None,
) -> grpc.Channel:
    """Like ``grpc.secure_channel``, for a ``kubernetes:`` target.

    The TLS name and ``:authority`` default to the snapshot's ``serverName``
    (``service.namespace``); ``server_name`` overrides both.
    """
    lease = _lease(
        target,
        snapshot_dir=snapshot_dir,
        namespace=namespace,
        zone=zone,
        lb_policy=lb_policy,
        max_attempts=max_attempts,
        debounce_ms=debounce_ms,
        poll_interval_ms=poll_interval_ms,
        namespace_file=namespace_file,
        pick_metrics=pick_metrics,
        cluster_ip_fallback=cluster_ip_fallback,
        failover_timeout_ms=failover_timeout_ms,
        keepalive_ms=keepalive_ms,
    )
    try:
        return Channel(lease, options, credentials, compression, server_name)
    except BaseException:
        lease.release()
        raise
