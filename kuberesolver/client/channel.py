"""Sync channels: ``kubernetes:`` targets on real ``grpc.Channel`` objects.

How it works: the target's snapshot is located and watched (see
:mod:`kuberesolver.client.sources.file`); an in-process xDS server serves it to grpc's own
xDS client (see :mod:`kuberesolver.xds`); the channel handed back is grpc's
own channel on ``xds://kuberesolver/<name>``. Balancing, connectivity, retries
and the data path are grpc's C core: no Python runs per call.

The :class:`Channel` handed back implements grpc's public ``grpc.Channel``
interface by delegating to a channel made with the public
``grpc.insecure_channel`` / ``grpc.secure_channel``, so stubs,
``grpc.intercept_channel`` and ``grpc.channel_ready_future`` work unchanged.

Channels of the same target and options share one watch and one set of xDS
resources. The last channel to close stops the watch, and the last channel of
the process stops the xDS server.

A target whose snapshot is not mounted yet gets a channel anyway (unless
``strict=True``): see :mod:`kuberesolver.client.sources.awaited` and
:mod:`kuberesolver.client.calls`, which also applies ``methodConfig`` timeouts.

Fork: the xDS server and the watches are threads, which a forked child does
not inherit. In the child, the registry starts empty, and a channel made
before the fork refuses its calls with :class:`~kuberesolver.client.calls.ForkedChannelError`
naming the fix (make channels after the fork).
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import logging
import os
import threading
import warnings
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Final, Literal, Protocol, TypeVar, Unpack

import grpc

from kuberesolver.client import calls, metrics
from kuberesolver.client.memory import (
    SHRINK_THRESHOLD,
    fix_trim_threshold,
    give_back_after_shrink,
    should_give_back,
)
from kuberesolver.client.settings import ChannelArgs, Settings, resolve_from
from kuberesolver.client.sources.api.builder import builder_or_default, choose_source
from kuberesolver.client.sources.api.watcher import ApiWatcher
from kuberesolver.client.sources.awaited import AwaitedSnapshot
from kuberesolver.client.sources.file import (
    SnapshotNotFound,
    SnapshotWatcher,
    check_snapshot,
    locate,
)
from kuberesolver.client.sources.operator import authority as operator_authority
from kuberesolver.client.sources.operator import ensure_bootstrap, xds_target
from kuberesolver.client.target import ParsedTarget, parse_target, schemes
from kuberesolver.core.policies import normalize_policy
from kuberesolver.core.service_config import method_rules
from kuberesolver.core.snapshot import ENDPOINTS_KEY, Snapshot, load
from kuberesolver.xds.ads_inprocess import AdsServer
from kuberesolver.xds.bootstrap_inprocess import install_bootstrap
from kuberesolver.xds.channel_resources import ChannelSpec
from kuberesolver.xds.resources import (
    AUTHORITY,
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    build_resources,
    cluster_name,
    endpoints_name,
    listener_name,
    unapplied_service_config_keys,
)

__all__ = ["Channel", "Lease", "insecure_channel", "secure_channel"]

log = logging.getLogger("kuberesolver")

ChannelOptions = Sequence[tuple[str, Any]]


class _Source(Protocol):
    """What follows one target: a snapshot directory, or the API (direct mode)."""

    snapshot: Snapshot  # the last good one; set back to what grpc last accepted after a NACK

    def start(self) -> None: ...

    def stop(self, timeout_s: float = ...) -> None: ...


@dataclass(eq=False)
class _WatchedDir:
    directory: Path | str  # a snapshot directory, or "api:<host>/<ns>/<service>:<port>"
    target: ParsedTarget
    watcher: _Source
    label: str
    specs: dict[str, list[Any]] = field(default_factory=dict)  # name -> [spec, refs]
    unapplied: list[str] = field(default_factory=list)  # service-config keys last warned about
    watch_settings: tuple[int, int] = (0, 0)  # (debounce_ms, poll_interval_ms) of the watcher
    warned_settings: bool = False
    sent: dict[tuple[str, int], Snapshot] = field(default_factory=dict)  # (type, version) -> sent
    confirmed: Snapshot | None = None  # the last snapshot grpc's xDS client accepted
    logged_revision: int | None = None  # the last revision logged as applied
    peak_endpoints: int = 0  # most endpoints grpc held since memory was last given back
    registries: dict[int, list[Any]] = field(default_factory=dict)  # id -> [registry, channels]
    timeouts: tuple[Snapshot | None, dict[str, float | None]] = (None, {})
    """The methodConfig timeouts of one snapshot, by method, as they were asked for."""

    @property
    def metric_registries(self) -> list[Any]:
        """The registries the target's metrics go to (those of its channels)."""
        return [entry[0] for entry in self.registries.values()]

    def method_timeout(self, method: str) -> float | None:
        snapshot = self.watcher.snapshot
        held, by_method = self.timeouts
        if held is not snapshot:
            by_method = {}
            self.timeouts = (snapshot, by_method)
        if method not in by_method:
            by_method[method] = calls.timeout_for(method_rules(snapshot.service_config), method)
        return by_method[method]

    def owns(self, names: frozenset[str]) -> bool:
        for spec_name in self.specs:
            if not names.isdisjoint(
                (listener_name(spec_name), cluster_name(spec_name), endpoints_name(spec_name))
            ):
                return True
        return False


def _file_dir(directory: Path, parsed: ParsedTarget, label: str, settings: Settings) -> _WatchedDir:
    """A snapshot directory's entry, its watcher still to be set (it needs the entry)."""
    return _WatchedDir(
        directory=directory,
        target=parsed,
        watcher=None,  # type: ignore[arg-type]
        label=label,
        watch_settings=(settings.debounce_ms, settings.poll_interval_ms),
    )


_MAX_SENT = 6  # (type, version) entries remembered per directory until grpc answers
# (two snapshots at most: a large one must not be held many times over)


_generation = 0
"""Bumped in a forked child: a lease of an older generation belongs to the parent."""
_FORK_SUPPORT: Final = "GRPC_ENABLE_FORK_SUPPORT"


class Lease:
    """One channel's hold on a target: its xDS name, released exactly once."""

    def __init__(
        self, registry: _Registry, wd: _WatchedDir, spec: ChannelSpec, metrics_registry: Any = None
    ) -> None:
        self._registry = registry
        self._wd = wd
        self._generation = _generation
        self._pid = os.getpid()
        self.metrics_registry = metrics_registry
        self.spec = spec
        self.target = wd.target
        self.directory = wd.directory
        self.xds_target = f"xds://{AUTHORITY}/{spec.name}"
        self._released = False
        self._lock = threading.Lock()
        self._untrack_picks: Callable[[], None] | None = None
        self.default_options: list[tuple[str, Any]] = []
        """Channel options from the settings (failover timer, keepalive); the caller's win."""

    @property
    def label(self) -> str:
        """The target as metrics name it: ``service.namespace:port``."""
        return self._wd.label

    @property
    def snapshot(self) -> Snapshot:
        """The last good snapshot this channel follows."""
        return self._wd.watcher.snapshot

    @property
    def accepted_revision(self) -> int | None:
        """The revision grpc's xDS client last accepted for this target (None: none yet)."""
        confirmed = self._wd.confirmed
        return None if confirmed is None else confirmed.revision

    @property
    def released(self) -> bool:
        return self._released

    @property
    def forked(self) -> bool:
        """Whether this process is a child forked after the lease was taken."""
        return self._generation != _generation

    def check_process(self) -> None:
        """Raise :class:`~kuberesolver.client.calls.ForkedChannelError` in a forked child."""
        if self._generation != _generation:
            raise calls.ForkedChannelError(
                f"this kuberesolver channel for {self.target.server_name} was made in process "
                f"{self._pid} before it forked; this is process {os.getpid()}, where its xDS "
                f"server and file watch do not run (threads do not survive fork). {_AFTER_FORK}"
            )

    @property
    def missing(self) -> str | None:
        """What is missing while the target's snapshot is not mounted (None: it is there)."""
        return getattr(self._wd.watcher, "missing", None)

    def method_timeout(self, method: str) -> float | None:
        """The snapshot's ``methodConfig`` timeout for ``method``, in seconds (None: none)."""
        return self._wd.method_timeout(method)

    def release(self) -> None:
        """Give the target back. Idempotent; nothing in a forked child (the parent holds it)."""
        with self._lock:
            if self._released:
                return
            self._released = True
            untrack, self._untrack_picks = self._untrack_picks, None
        if self.forked:
            return
        if untrack is not None:
            untrack()
        self._registry.release(self._wd, self.spec, self.metrics_registry)

    def track_picks(self) -> None:
        """Export this target's calls per endpoint (see :mod:`kuberesolver.client.metrics`)."""
        wd = self._wd
        with self._lock:
            if self._released or self._untrack_picks is not None:
                return
            self._untrack_picks = metrics.track_picks(
                self.xds_target, wd.label, lambda: wd.watcher.snapshot, self.metrics_registry
            )


class _Registry:
    """Process-wide: the xDS server, the watched directories and the served specs."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._ads: AdsServer | None = None
        self._dirs: dict[Path | str, _WatchedDir] = {}
        self._server_acks = threading.Condition(self._lock)
        self._server_acked: dict[str, int] = {}
        """Per server Listener (kuberesolver.server): the last version grpc accepted."""
        self._servers = 0
        """Drainable servers made and not yet stopped: they keep the xDS server up."""
        self._forked_from: tuple[int, bool] | None = None
        """In a child forked from a process that had our xDS server: the parent's pid, and
        whether the server was running at the fork."""
        self._inherited: list[object] = []
        """The parent's xDS server and watches, in a forked child: kept, never stopped (their
        threads are not here, and stopping them would wait for threads that do not exist)."""

    def forget_after_fork(self) -> None:
        """In a forked child: start empty. The parent's state stays the parent's."""
        if self._ads is not None:
            self._forked_from = (os.getppid(), self._ads.running)
        self._inherited.append((self._ads, self._dirs))
        self._lock = threading.RLock()  # another thread may have held it at the fork
        self._server_acks = threading.Condition(self._lock)
        self._ads = None
        self._dirs = {}
        self._server_acked = {}
        self._servers = 0

    @property
    def ads(self) -> AdsServer | None:
        return self._ads

    def watched(self) -> list[Path | str]:
        with self._lock:
            return sorted(self._dirs, key=str)

    def acquire(
        self,
        target: str,
        *,
        namespace: str | None,
        settings: Settings,
        metrics_registry: Any = None,
    ) -> Lease:
        parsed = parse_target(target, namespace=namespace, namespace_file=settings.namespace_file)
        if choose_source(parsed.scheme, settings.source) == "api":
            return self._acquire_api(parsed, settings, metrics_registry)
        try:
            directory = locate(settings.snapshot_dir, parsed)
        except SnapshotNotFound as exc:
            if settings.strict:
                raise
            return self._acquire_awaited(parsed, settings, str(exc), metrics_registry)
        with self._lock:
            wd = self._dirs.get(directory)
            snapshot = load(directory / ENDPOINTS_KEY) if wd is None else wd.watcher.snapshot
            check_snapshot(snapshot, parsed, str(directory))
            digest = hashlib.sha1(str(directory.resolve()).encode(), usedforsecurity=False)
            spec = _spec(parsed, settings, snapshot, digest.hexdigest()[:8])
            ads = self._ensure_ads()
            if wd is None:
                wd = _file_dir(directory, parsed, f"{parsed.server_name}:{spec.port}", settings)
                wd.watcher = SnapshotWatcher(
                    directory,
                    parsed,
                    snapshot,
                    on_change=functools.partial(self._apply, wd),
                    on_reject=functools.partial(_record_rejected, wd),
                    debounce_ms=settings.debounce_ms,
                    poll_interval_ms=settings.poll_interval_ms,
                )
                self._dirs[directory] = wd
                wd.logged_revision = snapshot.revision
                _warn_unapplied(wd, snapshot)
                wd.watcher.start()
                log.info(
                    "following %s from %s: revision %d, %d ready of %d endpoints",
                    parsed.server_name,
                    directory,
                    snapshot.revision,
                    len(snapshot.ready_endpoints),
                    len(snapshot.endpoints),
                )
            else:
                _warn_watch_settings(wd, settings)
            return self._hold(wd, spec, ads, metrics_registry)

    def _acquire_awaited(
        self, parsed: ParsedTarget, settings: Settings, missing: str, metrics_registry: Any
    ) -> Lease:
        """A target whose snapshot is not there yet: a channel that waits for it."""
        directory = settings.snapshot_dir / parsed.server_name
        with self._lock:
            wd = self._dirs.get(directory)
            if wd is None:
                label = f"{parsed.server_name}:{parsed.port or '-'}"
                wd = _file_dir(directory, parsed, label, settings)
                wd.watcher = AwaitedSnapshot(
                    settings.snapshot_dir,
                    parsed,
                    missing,
                    on_found=functools.partial(self._found, wd),
                    on_change=functools.partial(self._apply, wd),
                    on_reject=functools.partial(_record_rejected, wd),
                    debounce_ms=settings.debounce_ms,
                    poll_interval_ms=settings.poll_interval_ms,
                )
                self._dirs[directory] = wd
                log.warning(
                    "%s: no snapshot yet (%s); its calls wait for it (wait_for_ready=True) "
                    "or fail with UNAVAILABLE until it appears",
                    parsed.server_name,
                    missing,
                )
                wd.watcher.start()
            else:
                _warn_watch_settings(wd, settings)
            digest = hashlib.sha1(str(directory.resolve()).encode(), usedforsecurity=False)
            spec = _spec(parsed, settings, wd.watcher.snapshot, digest.hexdigest()[:8])
            return self._hold(wd, spec, self._ensure_ads(), metrics_registry)

    def _found(self, wd: _WatchedDir, directory: Path, snapshot: Snapshot) -> None:
        """An awaited snapshot appeared: serve it to every channel of the target."""
        log.info(
            "%s: snapshot found in %s: revision %d, %d ready of %d endpoints",
            wd.target.server_name,
            directory,
            snapshot.revision,
            len(snapshot.ready_endpoints),
            len(snapshot.endpoints),
        )
        with self._lock:
            wd.logged_revision = snapshot.revision
        self._apply(wd, snapshot)

    def _acquire_api(
        self, parsed: ParsedTarget, settings: Settings, metrics_registry: Any = None
    ) -> Lease:
        """Direct mode: one API watch per target and API server, shared by its channels."""
        k8s = builder_or_default(parsed.scheme).client()
        key = f"api:{k8s.host}/{parsed.namespace}/{parsed.service}:{parsed.port}"
        with self._lock:
            wd = self._dirs.get(key)
            if wd is None:
                label = f"{parsed.server_name}:{parsed.port or '-'}"
                wd = _WatchedDir(directory=key, target=parsed, watcher=None, label=label)  # type: ignore[arg-type]
                watcher = ApiWatcher(k8s, parsed, on_change=functools.partial(self._apply, wd))
                snapshot = watcher.sync()
                wd.watcher = watcher
                self._dirs[key] = wd
                wd.logged_revision = snapshot.revision
                watcher.start()
                log.info(
                    "following %s through the API at %s: %d ready of %d endpoints",
                    parsed.server_name,
                    k8s.host,
                    len(snapshot.ready_endpoints),
                    len(snapshot.endpoints),
                )
            digest = hashlib.sha1(key.encode(), usedforsecurity=False)
            spec = _spec(parsed, settings, wd.watcher.snapshot, digest.hexdigest()[:8])
            return self._hold(wd, spec, self._ensure_ads(), metrics_registry)

    def _hold(
        self, wd: _WatchedDir, spec: ChannelSpec, ads: AdsServer, metrics_registry: Any
    ) -> Lease:
        awaited = getattr(wd.watcher, "missing", None) is not None
        entry = wd.specs.get(spec.name)
        if entry is None:
            wd.specs[spec.name] = [spec, 1]
            if not awaited:  # grpc holds the name unresolved until the snapshot is found
                _publish(ads, wd, spec, wd.watcher.snapshot)
        else:
            entry[1] += 1
        if metrics_registry is not None:
            held = wd.registries.setdefault(id(metrics_registry), [metrics_registry, 0])
            held[1] += 1
            if held[1] == 1 and not awaited:
                metrics.record_applied(wd.label, wd.watcher.snapshot, [metrics_registry])
        return Lease(self, wd, spec, metrics_registry)

    def _ensure_ads(self) -> AdsServer:
        if self._ads is None:
            _check_grpc_after_fork(self._forked_from)
            ads = AdsServer()
            ads.on_idle = self._on_ads_idle
            ads.on_ack = self._on_ack
            ads.on_nack = self._on_nack
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
        """A new good snapshot from the watcher: serve it to grpc (logged once grpc accepts it)."""
        with self._lock:
            ads = self._ads
            if ads is None:
                return
            for spec, _refs in wd.specs.values():
                _publish(ads, wd, spec, snapshot)
        _warn_unapplied(wd, snapshot)
        metrics.record_applied(wd.label, snapshot, wd.metric_registries)
        log.debug("%s: revision %d sent to grpc's xDS client", wd.label, snapshot.revision)

    def _owner(self, names: frozenset[str]) -> _WatchedDir | None:
        for wd in self._dirs.values():
            if wd.owns(names):
                return wd
        return None

    def hold_for_server(self) -> None:
        """A drainable server is being made: the xDS server and the bootstrap first.

        grpc reads the bootstrap as it makes the server; the xDS server stays
        up until :meth:`retire_server_listeners` for that server.
        """
        with self._lock:
            self._ensure_ads()
            self._servers += 1

    def publish_server_listeners(self, listeners: dict[str, Any]) -> int:
        """Serve drainable servers' Listeners (by name); returns the version to await."""
        with self._lock:
            ads = self._ensure_ads()
            for name in listeners:
                self._server_acked.setdefault(name, -1)
            return ads.publish({LISTENER_TYPE: listeners})[LISTENER_TYPE]

    def await_server_listeners(self, names: Sequence[str], version: int, timeout_s: float) -> bool:
        """Wait until grpc's xDS server client accepted ``version`` (or later) of ``names``."""
        with self._server_acks:
            return self._server_acks.wait_for(
                lambda: all(self._server_acked.get(n, -1) >= version for n in names),
                timeout=timeout_s,
            )

    def retire_server_listeners(self, names: Sequence[str]) -> None:
        """Forget a stopped server's Listeners (kept while grpc still subscribes)."""
        with self._lock:
            self._servers -= 1
            for name in names:
                self._server_acked.pop(name, None)
            if self._ads is not None:
                self._ads.remove({LISTENER_TYPE: list(names)})

    def _on_ack(self, type_url: str, names: frozenset[str], version: int) -> None:
        with self._lock:
            ours = names & self._server_acked.keys() if type_url == LISTENER_TYPE else set()
            for name in ours:
                self._server_acked[name] = max(self._server_acked[name], version)
            if ours:
                self._server_acks.notify_all()
            wd = self._owner(names)
            if wd is None:
                return
            snapshot = wd.sent.get((type_url, version))
            for key in [k for k in wd.sent if k[0] == type_url and k[1] <= version]:
                del wd.sent[key]
            if snapshot is None:
                return
            wd.confirmed = snapshot
            if type_url != ENDPOINT_TYPE:
                return
            held = len(snapshot.endpoints)
            wd.peak_endpoints = max(wd.peak_endpoints, held)
            shrunk = should_give_back(wd.peak_endpoints, held)
            if shrunk:
                wd.peak_endpoints = held
            logged, wd.logged_revision = wd.logged_revision, snapshot.revision
        if held >= SHRINK_THRESHOLD:  # before it shrinks, or its memory stays (see _memory.py)
            fix_trim_threshold()
        if shrunk:  # grpc has dropped its copy of the large one: give the memory back
            threading.Thread(
                target=give_back_after_shrink, name="kuberesolver-give-back", daemon=True
            ).start()
        if logged == snapshot.revision:
            return
        log.info(
            "%s: revision %d applied, %d ready of %d endpoints",
            wd.label,
            snapshot.revision,
            len(snapshot.ready_endpoints),
            len(snapshot.endpoints),
        )

    def _on_nack(self, type_url: str, names: frozenset[str], version: int, message: str) -> None:
        """grpc refused what we sent: keep (and serve again) what it last accepted."""
        with self._lock:
            wd = self._owner(names)
            if wd is None:
                return
            refused = wd.sent.pop((type_url, version), None)
            good = wd.confirmed
            ads = self._ads
            if good is not None and ads is not None:
                # serve again what grpc holds, so that the table and grpc agree
                wd.watcher.snapshot = good
                for spec, _refs in wd.specs.values():
                    _publish(ads, wd, spec, good)
        metrics.record_refused(wd.label, wd.metric_registries)
        log.error(
            "%s: grpc's xDS client refused %s%s: %s; keeping %s",
            wd.label,
            type_url.rsplit(".", 1)[-1],
            f" of revision {refused.revision}" if refused is not None else "",
            message,
            f"revision {good.revision}" if good is not None else "what it had",
        )

    def release(self, wd: _WatchedDir, spec: ChannelSpec, metrics_registry: Any = None) -> None:
        stop_watcher = False
        with self._lock:
            held = wd.registries.get(id(metrics_registry))
            if held is not None:
                held[1] -= 1
                if held[1] <= 0:
                    del wd.registries[id(held[0])]
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
        """Stop the xDS server once no channel and no drainable server is left and grpc's
        xDS clients hung up.

        Stopping it while grpc still holds an ADS stream would put grpc's
        connection to it into reconnect backoff, and the next channel's first
        calls would fail while it lasts.
        """
        with self._lock:
            ads = self._ads
            if self._dirs or self._servers or ads is None or not ads.running or ads.stream_count:
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


_GRPC_TRUE: Final = frozenset({"yes", "true", "1"})


_AFTER_FORK: Final = (
    "Make channels only after the fork: gunicorn: in the post_fork hook or on first use in "
    "the worker, not at import with --preload; multiprocessing: in the target function, or "
    "with the spawn or forkserver start method"
)


def _check_grpc_after_fork(forked_from: tuple[int, bool] | None) -> None:
    """Refuse a new channel in a child of a process that had our xDS server (a grpc server).

    Measured with grpcio 1.85: while the server ran at the fork, grpc in the child
    hangs or crashes, with ``GRPC_ENABLE_FORK_SUPPORT`` too (grpc skips its fork
    handlers while other threads are inside grpc, as the server's are). Once it was
    stopped (every channel closed), grpc's own rule applies: fork support on, or nothing.
    """
    if forked_from is None:
        return
    parent, running = forked_from
    if running:
        raise calls.ForkedChannelError(
            f"this process ({os.getpid()}) was forked from process {parent} while "
            "kuberesolver's in-process xDS server ran there (a grpc server, serving that "
            "process's channels): grpc cannot make channels in such a child, with or "
            f"without {_FORK_SUPPORT}. {_AFTER_FORK}"
        )
    if os.environ.get(_FORK_SUPPORT, "").lower() not in _GRPC_TRUE:
        raise calls.ForkedChannelError(
            f"this process ({os.getpid()}) was forked from process {parent} after it used "
            f"grpc for kuberesolver channels, and grpc's fork support is off: set "
            f"{_FORK_SUPPORT}=1 before the parent imports grpc. {_AFTER_FORK}"
        )


def _after_fork_in_child() -> None:
    global _generation
    _generation += 1
    _registry.forget_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


def release_on_close(channel: object, lease: Lease) -> Callable[[], None]:
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
    """Say once per change when the snapshot's service config asks for what xDS cannot carry."""
    keys = unapplied_service_config_keys(snapshot.service_config, method_timeouts=True)
    if keys == wd.unapplied:
        return
    wd.unapplied = keys
    if keys:
        log.warning(
            "%s: revision %d: serviceConfig parts not applied by this client: %s "
            "(applied: the load-balancing policy, methodConfig timeouts and retry policies)",
            wd.label,
            snapshot.revision,
            ", ".join(keys),
        )


def _spec(parsed: ParsedTarget, settings: Settings, snapshot: Snapshot, source: str) -> ChannelSpec:
    return ChannelSpec(
        service=parsed.service,
        namespace=parsed.namespace,
        port=parsed.port or str(snapshot.target.port_name or snapshot.target.port_number),
        lb_policy=normalize_policy(settings.lb_policy) if settings.lb_policy else "",
        zone=settings.zone,
        max_attempts=min(settings.max_attempts, 5),
        source=source,
        cluster_ip_fallback=settings.cluster_ip_fallback,
        default_outlier_detection=settings.outlier_detection,
    )


def _publish(ads: AdsServer, wd: _WatchedDir, spec: ChannelSpec, snapshot: Snapshot) -> None:
    """Serve ``snapshot`` for ``spec`` and remember it until grpc answers (registry lock held)."""
    versions = ads.publish(build_resources(spec, snapshot))
    for type_url in (LISTENER_TYPE, CLUSTER_TYPE, ENDPOINT_TYPE):
        wd.sent[(type_url, versions[type_url])] = snapshot
    while len(wd.sent) > _MAX_SENT:
        del wd.sent[next(iter(wd.sent))]


def _warn_watch_settings(wd: _WatchedDir, settings: Settings) -> None:
    """Say once per directory when a channel asks for watch settings the shared watch lacks."""
    asked = (settings.debounce_ms, settings.poll_interval_ms)
    if asked == wd.watch_settings or wd.warned_settings:
        return
    wd.warned_settings = True
    log.warning(
        "%s: debounce_ms=%d, poll_interval_ms=%d asked for, but the watch of %s that every "
        "channel of this target shares runs with debounce_ms=%d, poll_interval_ms=%d "
        "(set them per process: KUBERESOLVER_DEBOUNCE_MS, KUBERESOLVER_POLL_INTERVAL_MS)",
        wd.label,
        asked[0],
        asked[1],
        wd.directory,
        wd.watch_settings[0],
        wd.watch_settings[1],
    )


def _record_rejected(wd: _WatchedDir, _problem: str) -> None:
    metrics.record_rejected(wd.label, wd.metric_registries)


def registry() -> _Registry:
    """The process-wide registry (for tests and ``inspect``)."""
    return _registry


def channel_options(
    options: ChannelOptions | None,
    server_name: str,
    secure: bool,
    defaults: ChannelOptions = (),
) -> list[tuple[str, Any]]:
    """The caller's options plus ``defaults`` and the authority (and TLS name), unless set."""
    merged = list(options or ())
    keys = {key for key, _ in merged}
    merged += [(key, value) for key, value in defaults if key not in keys]
    if "grpc.default_authority" not in keys:
        merged.append(("grpc.default_authority", server_name))
    if secure and "grpc.ssl_target_name_override" not in keys:
        merged.append(("grpc.ssl_target_name_override", server_name))
    return merged


def is_kuberesolver_target(target: str) -> bool:
    """Whether ``target``'s scheme is ours (``kubernetes:`` or a registered one).

    Any other target (``dns:///svc:50051``, ``localhost:50051``, ``ipv4:...``,
    ``xds:///...``) goes to grpc unchanged.
    """
    scheme, sep, _ = target.partition(":")
    return bool(sep) and scheme.lower() in schemes()


def passthrough_options(
    options: ChannelOptions | None, kwargs: ChannelArgs, secure: bool
) -> list[tuple[str, Any]]:
    """The options for a target grpc resolves itself: only ``server_name`` applies."""
    name = kwargs.get("server_name") or kwargs.get("authority")
    return channel_options(options, name, secure) if name else list(options or ())


def _check_kwargs(kwargs: ChannelArgs) -> None:
    unknown = set(kwargs) - set(ChannelArgs.__annotations__)
    if unknown:
        raise TypeError(f"unexpected keyword argument(s): {', '.join(sorted(unknown))}")


def via_operator(target: str, kwargs: ChannelArgs) -> tuple[str, str, list[tuple[str, Any]]] | None:
    """For ``source="operator"``: the ``xds:`` target, the ``:authority`` name and the default
    options; ``None`` for the other sources. No lease: the operator serves the resources."""
    _check_kwargs(kwargs)
    settings = resolve_from(kwargs)
    if settings.source is None or settings.source.strip().lower() != "operator":
        return None
    parsed = parse_target(
        target, namespace=kwargs.get("namespace"), namespace_file=settings.namespace_file
    )
    xds_authority = operator_authority()
    ensure_bootstrap(xds_authority)
    name = kwargs.get("server_name") or kwargs.get("authority") or parsed.server_name
    return xds_target(parsed, xds_authority), name, list(settings.channel_options())


def open_lease(target: str, kwargs: ChannelArgs) -> tuple[Lease, str]:
    """Acquire ``target`` for one channel: its lease and the name for TLS and ``:authority``."""
    _check_kwargs(kwargs)
    authority = kwargs.get("authority")
    server_name = kwargs.get("server_name")
    if authority is not None:
        warnings.warn(
            "authority= is deprecated: use server_name= (the TLS name and :authority)",
            DeprecationWarning,
            stacklevel=4,  # the caller of insecure_channel / secure_channel
        )
        if server_name is not None and server_name != authority:
            raise ValueError(f"authority={authority!r} and server_name={server_name!r} disagree")
        server_name = authority
    namespace = kwargs.get("namespace")
    settings = resolve_from(kwargs)
    lease = _registry.acquire(
        target, namespace=namespace, settings=settings, metrics_registry=kwargs.get("registry")
    )
    lease.default_options = settings.channel_options()
    try:
        if settings.pick_metrics:
            lease.track_picks()
        name = server_name or lease.snapshot.server_name or lease.target.server_name
    except BaseException:
        lease.release()
        raise
    return lease, name


def _nothing() -> None:
    pass


_C = TypeVar("_C")


def open_channel(
    target: str,
    options: ChannelOptions | None,
    kwargs: ChannelArgs,
    secure: bool,
    make: Callable[[str, list[tuple[str, Any]]], _C],
) -> tuple[Lease | None, _C]:
    """``make(grpc_target, options)`` for ``target``, with its lease (None: grpc resolves it).

    The one path of the four constructors: a target of another scheme goes to
    grpc unchanged; a ``kubernetes:`` one gets a lease, released again if
    ``make`` fails.
    """
    if not is_kuberesolver_target(target):
        return None, make(target, passthrough_options(options, kwargs, secure))
    operator = via_operator(target, kwargs)
    if operator is not None:
        to, name, defaults = operator
        return None, make(to, channel_options(options, name, secure, defaults))
    lease, name = open_lease(target, kwargs)
    try:
        return lease, make(
            lease.xds_target, channel_options(options, name, secure, lease.default_options)
        )
    except BaseException:
        lease.release()
        raise


def _forward(kind: str) -> Callable[..., Any]:
    """A ``unary_unary``-like method that hands the call to the wrapped grpc channel."""

    def call(
        self: LeasedChannel,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
        _registered_method: bool | None = False,
    ) -> Any:
        lease = self._lease
        if lease is not None:
            lease.check_process()
        multicallable = getattr(self._channel, kind)(
            method, request_serializer, response_deserializer, _registered_method
        )
        if lease is None:  # grpc resolves it, or the operator serves it: nothing to add
            return multicallable
        return calls.wrap(kind, multicallable, method, lease, self.is_aio)

    call.__name__ = call.__qualname__ = kind
    return call


class LeasedChannel:
    """What the sync and aio channels share: the lease, and calls forwarded to grpc's channel."""

    public_name: ClassVar[str] = "kuberesolver.Channel"
    """The name ``repr()`` shows: where users import the class from."""
    is_aio: ClassVar[bool] = False

    unary_unary = _forward("unary_unary")
    unary_stream = _forward("unary_stream")
    stream_unary = _forward("stream_unary")
    stream_stream = _forward("stream_stream")

    def __repr__(self) -> str:
        return f"<{self.public_name} {self._target}>"

    def __init__(self, lease: Lease | None, channel: Any, target: str = "") -> None:
        self._channel = channel
        self._lease = lease
        self._target = target or (lease.xds_target if lease is not None else "")
        self._release = release_on_close(self, lease) if lease is not None else _nothing

    @property
    def snapshot(self) -> Snapshot:
        """The last good snapshot this channel follows (LookupError: not a kuberesolver target)."""
        return self._held().snapshot

    @property
    def target(self) -> ParsedTarget:
        """The parsed ``kubernetes:`` target."""
        return self._held().target

    @property
    def lease(self) -> Lease:
        """This channel's hold on its target (its xDS name, directory and label)."""
        return self._held()

    def _held(self) -> Lease:
        if self._lease is None and is_kuberesolver_target(self._target):
            raise LookupError(
                f"{self._target!r} follows the operator's xDS (source='operator'): the "
                "operator holds its endpoints, so the channel has no snapshot"
            )
        if self._lease is None:
            raise LookupError(
                f"{self._target!r} is not a kuberesolver target: grpc resolves it as it is, "
                "so it has no snapshot"
            )
        return self._lease


class Channel(LeasedChannel, grpc.Channel):  # type: ignore[misc]
    """A ``grpc.Channel`` for a ``kubernetes:`` target; closing it releases the watch.

    Every call goes to grpc's own channel on the target's ``xds:`` name.
    """

    def __init__(self, lease: Lease | None, channel: grpc.Channel, target: str = "") -> None:
        super().__init__(lease, channel, target)
        self._closed = False

    def subscribe(self, callback: Callable[[Any], None], try_to_connect: bool = False) -> None:
        self._channel.subscribe(callback, try_to_connect=try_to_connect)

    def unsubscribe(self, callback: Callable[[Any], None]) -> None:
        self._channel.unsubscribe(callback)

    def close(self) -> None:
        """Close the channel and release its watch. Idempotent.

        In a child forked after the channel was made, only marks it closed: grpc's
        channel and the watch are the parent's.
        """
        if self._closed:
            return
        self._closed = True
        if self._lease is not None and self._lease.forked:
            self._release()
            return
        try:
            self._channel.close()
        finally:
            self._release()

    def __enter__(self) -> Channel:
        return self

    def __exit__(self, exc_type: object, exc_val: object, exc_tb: object) -> Literal[False]:
        self.close()
        return False


def insecure_channel(
    target: str,
    options: ChannelOptions | None = None,
    compression: grpc.Compression | None = None,
    **kwargs: Unpack[ChannelArgs],
) -> Channel:
    """Like ``grpc.insecure_channel``, for a ``kubernetes:`` target.

    Calls are balanced across the ready endpoints of the target's snapshot and
    follow its changes. ``server_name`` overrides ``:authority`` (default
    ``service.namespace``). ``registry=`` (a ``prometheus_client.CollectorRegistry``)
    receives the target's metrics, and with ``pick_metrics=True`` the calls per
    endpoint (:mod:`kuberesolver.client.metrics`); none are recorded without it. A
    snapshot not mounted yet is waited for (``strict=True`` raises instead). See
    :mod:`kuberesolver.client.settings` for the rest.

    A target of another scheme (``dns:///svc:50051``, ``localhost:50051``,
    ``ipv4:10.0.0.1:50051``) goes to grpc unchanged: grpc resolves it, only
    ``server_name`` applies, and the channel has no ``snapshot``.
    """
    lease, inner = open_channel(
        target,
        options,
        kwargs,
        False,
        lambda to, opts: grpc.insecure_channel(to, opts, compression),
    )
    return Channel(lease, inner, target)


def secure_channel(
    target: str,
    credentials: grpc.ChannelCredentials,
    options: ChannelOptions | None = None,
    compression: grpc.Compression | None = None,
    **kwargs: Unpack[ChannelArgs],
) -> Channel:
    """Like ``grpc.secure_channel``, for a ``kubernetes:`` target.

    The TLS name and ``:authority`` default to the snapshot's ``serverName``
    (``service.namespace``); ``server_name`` overrides both.
    """
    lease, inner = open_channel(
        target,
        options,
        kwargs,
        True,
        lambda to, opts: grpc.secure_channel(to, credentials, opts, compression),
    )
    return Channel(lease, inner, target)
