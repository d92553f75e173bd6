"""Finding a target's snapshot on disk and following it as it changes.

Where a snapshot lives, under the snapshot root (see :mod:`kuberesolver.settings`):

1. ``<root>/<service>.<namespace>/endpoints.json`` (one ConfigMap per target), else
2. ``<root>/endpoints.json`` when it describes ``service.namespace`` (one
   ConfigMap mounted at the root, or a root that is itself the snapshot dir).

The watcher watches the *directory*, not the file: kubelet updates a ConfigMap
volume by swapping the ``..data`` symlink, and a file-level watch would stay on
the old inode. Plain replacement (write then rename, or rewrite in place) is
seen the same way. Events are batched for up to ``debounce_ms``; a re-check
every ``poll_interval_ms`` covers a directory that vanished and came back.

A deleted, corrupt, unknown-version or foreign snapshot is logged and the last
good one is kept: a bad file never empties a channel.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from watchfiles._rust_notify import RustNotify

from kuberesolver.snapshot import ENDPOINTS_KEY, Snapshot, SnapshotError, decode
from kuberesolver.target import ParsedTarget

__all__ = ["SnapshotNotFound", "SnapshotWatcher", "check_snapshot", "locate", "read_snapshot"]

log = logging.getLogger("kuberesolver.watch")


class SnapshotNotFound(FileNotFoundError):
    """No snapshot for a target under the searched directories."""


def locate(root: Path, target: ParsedTarget) -> Path:
    """The directory holding ``target``'s ``endpoints.json``, or :class:`SnapshotNotFound`."""
    per_target = root / target.server_name
    if (per_target / ENDPOINTS_KEY).exists():
        return per_target
    at_root = root / ENDPOINTS_KEY
    if at_root.exists():
        try:
            found = read_snapshot(root)
        except SnapshotError:
            return root  # a broken file for an unknown target: let the loader say what's wrong
        if (found.target.service, found.target.namespace) == (target.service, target.namespace):
            return root
        raise SnapshotNotFound(
            f"no snapshot for {target.server_name}: searched {per_target}/ (missing) and "
            f"{root}/ (its {ENDPOINTS_KEY} is for {found.target.server_name})"
        )
    raise SnapshotNotFound(
        f"no snapshot for {target.server_name}: neither {per_target / ENDPOINTS_KEY} nor "
        f"{at_root} exists (snapshot root {root}; set snapshot_dir= or KUBERESOLVER_DIR)"
    )


def read_snapshot(directory: Path) -> Snapshot:
    """Decode ``directory/endpoints.json``; :class:`SnapshotError` names the file and problem."""
    path = directory / ENDPOINTS_KEY
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SnapshotError(str(path), f"cannot read: {exc.strerror or exc}") from exc
    return decode(data, str(path))


def check_snapshot(snapshot: Snapshot, target: ParsedTarget, source: str) -> None:
    """Raise ValueError unless ``snapshot`` describes ``target`` (service, namespace, port)."""
    t = snapshot.target
    if (t.service, t.namespace) != (target.service, target.namespace):
        raise ValueError(f"{source}: snapshot is for {t.server_name}, not {target.server_name}")
    if not t.matches_port(target.port):
        have = t.port_name or t.port or t.port_number
        raise ValueError(
            f"{source}: target {target} asks for port {target.port!r} but the snapshot is for "
            f"port {have!r} (name {t.port_name or '-'}, number {t.port_number or '-'})"
        )


class SnapshotWatcher:
    """Follows one snapshot directory on a daemon thread; calls ``on_change`` with good ones.

    ``on_change`` runs on the watcher thread, only for a snapshot whose bytes
    differ from the last good one, and only after it decoded and matched.
    """

    def __init__(
        self,
        directory: Path,
        target: ParsedTarget,
        initial: Snapshot,
        on_change: Callable[[Snapshot], None],
        *,
        on_reject: Callable[[str], None] | None = None,
        debounce_ms: int = 50,
        poll_interval_ms: int = 5000,
    ) -> None:
        self.directory = directory
        self.target = target
        self.snapshot = initial
        self._on_change = on_change
        self._on_reject = on_reject
        self._debounce_ms = debounce_ms
        self._poll_interval_ms = poll_interval_ms
        self._stop = threading.Event()
        self._check_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._last_bytes: bytes | None = None
        self._problem: str | None = None
        self.updates = 0
        self.rejected = 0

    def start(self) -> None:
        """Start following. The directory watch is in place when this returns."""
        if self._thread is not None:
            return
        notify = self._open_notify()
        self._thread = threading.Thread(
            target=self._run,
            args=(notify,),
            name=f"kuberesolver-watch-{self.target.server_name}",
            daemon=True,
        )
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop watching. Idempotent."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _open_notify(self) -> RustNotify | None:
        if not self.directory.is_dir():
            return None
        try:
            return RustNotify([str(self.directory)], False, False, 300, False, True)
        except Exception as exc:  # an unusable watch backend: poll instead
            log.warning("cannot watch %s (%s); polling it instead", self.directory, exc)
            return None

    def _run(self, notify: RustNotify | None) -> None:
        # How long the rust side waits for more events after one: kubelet's swap
        # is done within a millisecond. Each step also takes the GIL once to
        # check the stop event (500 times a second: measured, within noise).
        step = max(1, min(2, self._debounce_ms))
        self.check()  # anything written while the watch was being set up
        while not self._stop.is_set():
            if notify is None:
                self._stop.wait(self._poll_interval_ms / 1000)
                self.check()
                notify = self._open_notify()
                continue
            broken = False
            try:
                result = notify.watch(self._debounce_ms, step, self._poll_interval_ms, self._stop)
            except Exception as exc:  # the watch broke (directory gone, backend error)
                log.debug("watching %s stopped (%s)", self.directory, exc)
                result, broken = "timeout", True
            if result == "stop":
                break
            self.check()
            if broken or not self.directory.is_dir():
                notify.close()
                notify = None  # the directory went away: poll until it is back
        if notify is not None:
            notify.close()

    def check(self) -> bool:
        """Re-read the snapshot now; apply it if it is new and good. Returns whether applied."""
        with self._check_lock:
            snapshot = self._check_locked()
        if snapshot is None:
            return False
        try:
            self._on_change(snapshot)
        except Exception:
            log.exception("applying %s revision %d failed", self.directory, snapshot.revision)
        return True

    def _check_locked(self) -> Snapshot | None:
        path = self.directory / ENDPOINTS_KEY
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            self._report(f"{path}: deleted; keeping the last good endpoints")
            return None
        except OSError as exc:
            self._report(f"{path}: cannot read ({exc.strerror or exc}); keeping the last good")
            return None
        if data == self._last_bytes:
            if self._problem is not None:
                log.info("%s: back to the last good snapshot", path)
                self._problem = None
            return None
        try:
            snapshot = decode(data, str(path))
            check_snapshot(snapshot, self.target, str(path))
        except ValueError as exc:
            self._report(f"{exc}; keeping the last good endpoints")
            return None
        self._last_bytes = data
        self._problem = None
        previous = self.snapshot
        if snapshot == previous:
            return None  # the first read, or the same content rewritten
        self.snapshot = snapshot
        self.updates += 1
        if snapshot.revision < previous.revision:
            log.info(
                "%s: revision went back from %d to %d; applying it anyway",
                path,
                previous.revision,
                snapshot.revision,
            )
        log.debug(
            "%s: revision %d, %d endpoints (%d ready)",
            path,
            snapshot.revision,
            len(snapshot.endpoints),
            len(snapshot.ready_endpoints),
        )
        return snapshot

    def _report(self, problem: str) -> None:
        if problem != self._problem:
            self._problem = problem
            self.rejected += 1
            log.error("%s", problem)
            if self._on_reject is not None:
                self._on_reject(problem)
