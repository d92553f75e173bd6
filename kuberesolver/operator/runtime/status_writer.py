"""Status patches in their own lane, coalesced per target: they never delay a ConfigMap write.

A reconcile publishes the ConfigMap first (what clients read), then hands
the target's new status to :meth:`StatusWriter.submit` and goes on. A few
writer tasks send the patches on their own API connection. A target with a
patch still pending when a newer status comes keeps only the newest: under
load (a rollout across many targets) status lags a little and is never
wrong for long; ConfigMaps are not held up behind it.

A failed patch is logged, counted and retried with backoff (unless a newer
status replaced it). A 404 means the GrpcTarget is gone: ``on_gone`` ends
its loop. Nothing is sent while this replica does not lead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from kuberesolver.core.backoff import backoff_s
from kuberesolver.operator.runtime.hub import TargetKey

__all__ = ["StatusApi", "StatusWriter"]

_log = logging.getLogger("kuberesolver.operator")


class StatusApi(Protocol):
    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None: ...


@dataclass
class _Pending:
    status: dict[str, Any]
    on_gone: Callable[[], None]
    failures: int = 0


class StatusWriter:
    """Sends the newest status of each target; :meth:`close` is idempotent."""

    def __init__(
        self,
        api: StatusApi,
        *,
        leading: Callable[[], bool],
        on_error: Callable[[TargetKey, Exception], None] | None = None,
        writers: int = 2,
    ) -> None:
        self._api = api
        self._leading = leading
        self._on_error = on_error
        self._pending: dict[TargetKey, _Pending] = {}
        self._queue: asyncio.Queue[TargetKey] = asyncio.Queue()
        self._writers = writers
        self._tasks: list[asyncio.Task[None]] = []
        self._retries: set[asyncio.Task[None]] = set()
        self.sent = 0

    def __len__(self) -> int:
        """Targets with a status not sent yet."""
        return len(self._pending)

    def submit(
        self, key: TargetKey, status: Mapping[str, Any], on_gone: Callable[[], None]
    ) -> None:
        """Send ``status`` for ``key`` soon (replacing one not sent yet)."""
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._writer(), name=f"kuberesolver-status-{i}")
                for i in range(self._writers)
            ]
        queued = key in self._pending
        self._pending[key] = _Pending(dict(status), on_gone)
        if not queued:
            self._queue.put_nowait(key)

    def forget(self, key: TargetKey) -> None:
        """Drop what is pending for ``key`` (its loop ended)."""
        self._pending.pop(key, None)

    async def _writer(self) -> None:
        while True:
            key = await self._queue.get()
            pending = self._pending.pop(key, None)
            if pending is None or not self._leading():
                continue
            try:
                await self._api.patch_status(key[0], key[1], pending.status)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if getattr(exc, "status", None) == 404:
                    _log.info("%s/%s is gone; stopping", *key)
                    pending.on_gone()
                    continue
                pending.failures += 1
                if self._on_error is not None:
                    self._on_error(key, exc)
                self._retry_later(key, pending)
            else:
                self.sent += 1

    def _retry_later(self, key: TargetKey, pending: _Pending) -> None:
        async def retry() -> None:
            await asyncio.sleep(backoff_s(pending.failures))
            if key not in self._pending:  # nothing newer came meanwhile
                self._pending[key] = pending
                self._queue.put_nowait(key)

        task = asyncio.create_task(retry())
        self._retries.add(task)
        task.add_done_callback(self._retries.discard)

    async def close(self) -> None:
        tasks = [*self._tasks, *self._retries]
        self._tasks = []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._pending.clear()
