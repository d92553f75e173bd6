"""A target whose snapshot is not mounted yet: wait for it, then follow it.

Like grpc with a name it cannot resolve yet, a channel is made anyway (unless
``strict=True``). Until the file is there, :attr:`AwaitedSnapshot.missing`
says what is missing (calls that do not wait for ready fail with it, see
:mod:`kuberesolver.client.calls`). The watch is on the nearest directories that
exist, the target's directory or its first existing ancestor and the snapshot
root's (a directory that does not exist cannot be watched), with a re-check
every ``poll_interval_ms`` for what events miss (a volume mounted over a
directory sends none). Once :func:`~kuberesolver.client.sources.file.locate`
finds a good snapshot, ``on_found`` is called and a
:class:`~kuberesolver.client.sources.file.SnapshotWatcher` follows it from then on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

import watchfiles

from kuberesolver.client.settings import (
    DEFAULT_DEBOUNCE_MS,
    DEFAULT_POLL_INTERVAL_MS,
    WATCH_STEP_MS,
)
from kuberesolver.client.sources.file import SnapshotWatcher, check_snapshot, locate
from kuberesolver.client.target import ParsedTarget
from kuberesolver.core.snapshot import ENDPOINTS_KEY, Snapshot, SnapshotError, TargetRef, load

__all__ = ["AwaitedSnapshot", "nearest_existing", "placeholder"]

log = logging.getLogger("kuberesolver.watch")


def placeholder(target: ParsedTarget) -> Snapshot:
    """An empty snapshot for ``target``: what a channel holds until its file appears."""
    return Snapshot(TargetRef(target.service, target.namespace, target.port or ""), 0, (), {})


def nearest_existing(path: Path) -> Path:
    """``path`` if it is a directory, else its nearest ancestor that is one."""
    for candidate in (path, *path.parents):
        if candidate.is_dir():
            return candidate
    return Path(path.anchor or ".")


class AwaitedSnapshot:
    """Waits on a daemon thread for ``target``'s snapshot under ``root``, then follows it.

    ``on_found(directory, snapshot)`` runs once, on the waiting thread; after it,
    ``on_change`` and ``on_reject`` are the :class:`SnapshotWatcher`'s.
    """

    def __init__(
        self,
        root: Path,
        target: ParsedTarget,
        missing: str,
        *,
        on_found: Callable[[Path, Snapshot], None],
        on_change: Callable[[Snapshot], None],
        on_reject: Callable[[str], None] | None = None,
        debounce_ms: int = DEFAULT_DEBOUNCE_MS,
        poll_interval_ms: int = DEFAULT_POLL_INTERVAL_MS,
    ) -> None:
        self.root = root
        self.target = target
        self._missing: str | None = missing
        self._on_found = on_found
        self._on_change = on_change
        self._on_reject = on_reject
        self._debounce_ms = debounce_ms
        self._poll_interval_ms = poll_interval_ms
        self._placeholder = placeholder(target)
        self._follower: SnapshotWatcher | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def missing(self) -> str | None:
        """What is missing, until the snapshot is found (then None)."""
        return self._missing

    @property
    def snapshot(self) -> Snapshot:
        """The followed snapshot once found; an empty one for the target until then."""
        follower = self._follower
        return self._placeholder if follower is None else follower.snapshot

    @snapshot.setter
    def snapshot(self, snapshot: Snapshot) -> None:
        follower = self._follower
        if follower is not None:
            follower.snapshot = snapshot

    def start(self) -> None:
        """Start waiting (returns at once)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._run, name=f"kuberesolver-await-{self.target.server_name}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop waiting or following. Idempotent."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)
        with self._lock:
            follower = self._follower
        if follower is not None:
            follower.stop(timeout_s)

    def _watched(self) -> list[Path]:
        per_target = nearest_existing(self.root / self.target.server_name)
        at_root = nearest_existing(self.root)
        return sorted({per_target, at_root})

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._try():
                return
            paths = self._watched()
            try:
                for _changes in watchfiles.watch(
                    *paths,
                    watch_filter=None,
                    debounce=self._debounce_ms,
                    step=WATCH_STEP_MS,
                    stop_event=self._stop,
                    rust_timeout=self._poll_interval_ms,
                    yield_on_timeout=True,
                    raise_interrupt=False,
                    recursive=False,
                ):
                    if self._try():
                        return
                    if self._watched() != paths:  # a directory on the way appeared or went
                        break
            except Exception as exc:  # a watched directory vanished: poll, then watch again
                log.debug("watching %s: %r", paths, exc)
                self._stop.wait(self._poll_interval_ms / 1000)

    def _try(self) -> bool:
        """Look for the snapshot; when found and good, hand over to a SnapshotWatcher."""
        try:
            directory = locate(self.root, self.target)
            snapshot = load(directory / ENDPOINTS_KEY)
            check_snapshot(snapshot, self.target, str(directory))
        except FileNotFoundError as exc:  # SnapshotNotFound, or gone between the two looks
            self._missing = str(exc)
            return False
        except (SnapshotError, ValueError) as exc:
            if self._missing != str(exc):
                log.error("%s: %s; waiting for a good one", self.target.server_name, exc)
            self._missing = str(exc)
            return False
        follower = SnapshotWatcher(
            directory,
            self.target,
            snapshot,
            on_change=self._on_change,
            on_reject=self._on_reject,
            debounce_ms=self._debounce_ms,
            poll_interval_ms=self._poll_interval_ms,
        )
        with self._lock:
            if self._stop.is_set():
                return True
            self._follower = follower
        # no longer missing before it is served: a channel that joins in between serves it
        # itself rather than wait for a change
        self._missing = None
        self._on_found(directory, snapshot)
        follower.start()
        return True
