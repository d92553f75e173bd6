"""The GrpcTargets this replica knows, and one asyncio task per target while it leads.

The one place where handlers and loops share state: :class:`Targets` holds
each target's latest object (from kopf's event handler) and, while this
replica leads, runs the target's coalescing loop as the operator's own task.
A new object wakes its loop only when its ``generation`` differs from the one
the loop last planned (a status write of our own wakes nothing).

Pure asyncio, no kopf and no API client: ``run`` is injected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kuberesolver.operator.runtime.hub import Hub, TargetKey, Trigger

__all__ = ["Entry", "Targets"]

_log = logging.getLogger("kuberesolver.operator")


@dataclass
class Entry:
    """One GrpcTarget as last seen, and its loop while this replica leads."""

    uid: str
    body: Mapping[str, Any]
    planned_generation: int | None = None
    """The generation its loop last planned (set by the loop, read by :meth:`Targets.observe`)."""
    trigger: Trigger | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)


Runner = Callable[[TargetKey, Entry, Trigger], Awaitable[None]]


class Targets:
    """Known targets; their loops run only between :meth:`lead` and :meth:`follow`."""

    def __init__(self, hub: Hub, run: Runner, *, stop_timeout_s: float = 10.0) -> None:
        self.hub = hub
        self._run = run
        self._entries: dict[TargetKey, Entry] = {}
        self._leading = False
        self._stop_timeout_s = stop_timeout_s

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def leading(self) -> bool:
        """Whether the loops run (between :meth:`lead` and :meth:`follow`)."""
        return self._leading

    @property
    def running(self) -> int:
        return sum(1 for e in self._entries.values() if e.task is not None and not e.task.done())

    def keys(self) -> list[TargetKey]:
        return list(self._entries)

    def get(self, key: TargetKey) -> Entry | None:
        return self._entries.get(key)

    def observe(self, key: TargetKey, uid: str, body: Mapping[str, Any]) -> None:
        """A GrpcTarget was listed, added or modified."""
        entry = self._entries.get(key)
        if entry is not None and entry.uid == uid:
            entry.body = body
            generation = (body.get("metadata") or {}).get("generation")
            if generation != entry.planned_generation:
                self.hub.wake_target(key)
            return
        if entry is not None:  # another object of the same name
            self._stop(key, entry)
        entry = Entry(uid, body)
        self._entries[key] = entry
        if self._leading:
            self._start(key, entry)

    def forget(self, key: TargetKey, uid: str) -> None:
        """A GrpcTarget was deleted: end its loop (the GC collects its ConfigMap)."""
        entry = self._entries.get(key)
        if entry is not None and (not uid or entry.uid == uid):
            del self._entries[key]
            self._stop(key, entry)

    def lead(self) -> None:
        """Start a loop for every known target (this replica now writes)."""
        self._leading = True
        for key, entry in self._entries.items():
            if entry.task is None or entry.task.done():
                self._start(key, entry)

    async def follow(self, grace_s: float | None = None) -> None:
        """Stop every loop (another replica writes now); wait for them to end, at most
        ``grace_s`` (default ``stop_timeout_s``), then cancel those still running."""
        self._leading = False
        tasks = [t for key, e in self._entries.items() if (t := self._stop(key, e)) is not None]
        await self._wait(tasks, self._stop_timeout_s if grace_s is None else grace_s)

    async def close(self, grace_s: float = 0.0) -> None:
        """Stop every loop for good: the process is ending, so a loop mid-render or
        mid-write is cancelled after ``grace_s`` (a write already sent completes)."""
        await self.follow(grace_s)
        self._entries.clear()

    def _start(self, key: TargetKey, entry: Entry) -> None:
        trigger = self.hub.attach(key, entry.uid)
        entry.trigger = trigger
        entry.planned_generation = None
        entry.task = asyncio.create_task(
            self._guarded(key, entry, trigger), name=f"gt/{key[0]}/{key[1]}"
        )

    async def _guarded(self, key: TargetKey, entry: Entry, trigger: Trigger) -> None:
        try:
            await self._run(key, entry, trigger)
        except asyncio.CancelledError:
            raise
        except Exception:
            _log.exception("%s/%s: the loop ended with an error", *key)
        finally:
            self.hub.detach(key, trigger)

    def _stop(self, key: TargetKey, entry: Entry) -> asyncio.Task[None] | None:
        task, entry.task = entry.task, None
        if entry.trigger is not None:
            self.hub.detach(key, entry.trigger)
            entry.trigger = None
        return task if task is not None and not task.done() else None

    async def _wait(self, tasks: list[asyncio.Task[None]], timeout_s: float) -> None:
        if not tasks:
            return
        pending = set(tasks)
        if timeout_s > 0:
            _, pending = await asyncio.wait(tasks, timeout=timeout_s)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
