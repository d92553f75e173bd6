"""Finding a target's snapshot on disk and following it as it changes.

Where a snapshot lives, under the snapshot root (see :mod:`kuberesolver.client.settings`):

1. ``<root>/<service>.<namespace>/endpoints.json`` (one ConfigMap per target), else
2. ``<root>/endpoints.json`` when it describes ``service.namespace`` (one
   ConfigMap mounted at the root, or a root that is itself the snapshot dir).

The watcher watches the *directory*, not the file: kubelet updates a ConfigMap
volume by swapping the ``..data`` symlink, and a file-level watch would stay on
the old inode. Plain replacement (write then rename, or rewrite in place) is
seen the same way. Events are batched for up to ``debounce_ms``; a re-check
every ``poll_interval_ms`` covers a directory that vanished and came back.

A deleted, corrupt, unknown-version or foreign snapshot is logged and the last
good one is kept: a bad file never empties a channel. Nothing the watcher reads
can stop it: an unexpected error is logged once with its traceback, counted
(``on_reject``), and the watch goes on with the last good snapshot.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Callable
from pathlib import Path

import watchfiles

from kuberesolver.client.settings import (
    DEFAULT_DEBOUNCE_MS,
    DEFAULT_POLL_INTERVAL_MS,
    WATCH_STEP_MS,
)
from kuberesolver.client.target import ParsedTarget
from kuberesolver.core.snapshot import ENDPOINTS_KEY, Snapshot, SnapshotError, decode, load

__all__ = ["SnapshotNotFound", "SnapshotWatcher", "check_snapshot", "locate"]

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
            found = load(at_root)
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


class _StopSignal:
    """The ``stop_event`` handed to ``watchfiles.watch``: also tells when the watch is in place.

    watchfiles asks ``is_set()`` between its waits, so the first question
    comes once the directory watch exists.
    """

    def __init__(self, stop: threading.Event, ready: threading.Event) -> None:
        self._stop = stop
        self._ready = ready

    def is_set(self) -> bool:
        self._ready.set()
        return self._stop.is_set()


class SnapshotWatcher:
    """Follows one snapshot directory on a daemon thread; calls ``on_change`` with good ones.

    ``on_change`` runs on the watcher thread, only for a snapshot whose bytes
    differ from the last good one, and only after it decoded and matched.
    ``on_reject`` is called with each new problem (a bad file, or an
    unexpected error, logged once with its traceback).
    """

    def __init__(
        self,
        directory: Path,
        target: ParsedTarget,
        initial: Snapshot,
        on_change: Callable[[Snapshot], None],
        *,
        on_reject: Callable[[str], None] | None = None,
        debounce_ms: int = DEFAULT_DEBOUNCE_MS,
        poll_interval_ms: int = DEFAULT_POLL_INTERVAL_MS,
    ) -> None:
        self.directory = directory
        self.target = target
        self._snapshot = initial
        self._on_change = on_change
        self._on_reject = on_reject
        self._debounce_ms = debounce_ms
        self._poll_interval_ms = poll_interval_ms
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._check_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._last_bytes: bytes | None = None
        self._problem: str | None = None
        self.rejected = 0

    def start(self, ready_timeout_s: float = 5.0) -> None:
        """Start following. The directory watch is in place when this returns."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._run, name=f"kuberesolver-watch-{self.target.server_name}", daemon=True
        )
        self._thread.start()
        self._ready.wait(ready_timeout_s)
        self.check()  # anything written while the watch was being set up

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop watching. Idempotent."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        """The loop's edge: whatever goes wrong is logged once, counted, and the watch goes on."""
        while not self._stop.is_set():
            try:
                self._follow()
            except Exception as exc:
                self._report(f"watching {self.directory} failed: {exc!r}", exc)
                self._stop.wait(min(1.0, self._poll_interval_ms / 1000))
        self._ready.set()

    def _follow(self) -> None:
        """Watch the directory until it goes away (then poll until it is back) or stop."""
        if not self.directory.is_dir():
            self._ready.set()
            self._stop.wait(self._poll_interval_ms / 1000)
            self.check()
            return
        for _changes in watchfiles.watch(
            self.directory,
            watch_filter=None,
            debounce=self._debounce_ms,
            step=WATCH_STEP_MS,
            stop_event=_StopSignal(self._stop, self._ready),
            rust_timeout=self._poll_interval_ms,
            yield_on_timeout=True,
            raise_interrupt=False,
            recursive=False,
        ):
            self.check()
            if not self.directory.is_dir():
                return

    def check(self) -> bool:
        """Re-read the snapshot now; apply it if it is new and good. Returns whether applied.

        Never raises: a problem is logged (once), counted, and the last good
        snapshot stays.
        """
        with self._check_lock:
            try:
                snapshot = self._check_locked()
            except Exception as exc:
                self._report(f"{self.directory / ENDPOINTS_KEY}: {exc!r}", exc)
                return False
        if snapshot is None:
            return False
        try:
            self._on_change(snapshot)
        except Exception as exc:
            self._report(f"applying {self.directory} revision {snapshot.revision} failed", exc)
        return True

    @property
    def snapshot(self) -> Snapshot:
        """The last good snapshot."""
        return self._snapshot

    @snapshot.setter
    def snapshot(self, snapshot: Snapshot) -> None:
        """Go back to ``snapshot`` (what grpc last accepted); the refused file is not re-read."""
        with self._check_lock:
            self._snapshot = snapshot

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
        previous = self._snapshot
        if snapshot == previous:
            return None  # the first read, or the same content rewritten
        self._snapshot = snapshot
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

    def _report(self, problem: str, exc: BaseException | None = None) -> None:
        """Log and count a problem once (until another one, or a good snapshot, comes)."""
        if problem == self._problem:
            return
        self._problem = problem
        self.rejected += 1
        if exc is None:
            log.error("%s", problem)
        else:
            log.error(
                "%s; keeping the last good endpoints\n%s",
                problem,
                "".join(traceback.format_exception(exc)).rstrip(),
            )
        if self._on_reject is not None:
            try:
                self._on_reject(problem)
            except Exception:
                log.exception("counting a rejected snapshot failed")
