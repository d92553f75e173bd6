"""Posts the webhook's ``InjectionSkipped`` Events, aggregated (:mod:`.skips`), in the background.

Every replica serves admission, so every replica posts the Events of the Pods
it admitted (not only the Lease holder). A post never delays an admission and
a failed post is logged, never raised.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kuberesolver.operator.runtime.events import build_event
from kuberesolver.operator.runtime.kube import Kube
from kuberesolver.operator.webhook.skips import (
    SKIP_REASON,
    SkipEvents,
    pod_label,
    reason_of,
    regarding,
)

__all__ = ["SkipReporter"]

_log = logging.getLogger("kuberesolver.operator.webhook")


class SkipReporter:
    """One Event per skipped Pod, as :class:`~.skips.SkipEvents` allows; :meth:`run`
    posts the summaries of the windows that ended."""

    def __init__(
        self,
        kube: Kube,
        identity: str,
        events: SkipEvents | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._kube = kube
        self._identity = identity
        self.events = events if events is not None else SkipEvents()
        self._clock = clock
        self._posts: set[asyncio.Task[None]] = set()
        self._dropped_logged = 0

    def report(self, pod: Mapping[str, Any], namespace: str, problems: Sequence[str]) -> None:
        """A Pod in ``namespace`` was admitted without what it asked for (call from the loop)."""
        now = self._clock()
        self.flush(now)
        about = regarding(pod, namespace)
        name = str(about["metadata"]["name"])
        key = (namespace, str(about["kind"]), name, reason_of(problems[0]))
        message = f"Pod {pod_label(pod)}: {'; '.join(problems)}"
        if self.events.offer(key, message, about, now) == "post":
            self._post(about, message, 1)

    def flush(self, now: float | None = None) -> None:
        """Post the summaries that are due."""
        now = self._clock() if now is None else now
        for summary in self.events.due(now):
            message = (
                f"{summary.count} more Pods skipped within {self.events.window_s:.0f} s; "
                f"the last: {summary.message}"
            )
            self._post(summary.regarding, message, summary.count)
        if self.events.dropped > self._dropped_logged:
            _log.warning(
                "%d InjectionSkipped Events not posted (at most %d per %.0f s)",
                self.events.dropped - self._dropped_logged,
                self.events.max_posts,
                self.events.window_s,
            )
            self._dropped_logged = self.events.dropped

    async def run(self) -> None:
        """Post the summaries as their windows end (until cancelled)."""
        while True:
            await asyncio.sleep(self.events.window_s / 4)
            self.flush()

    async def close(self) -> None:
        if self._posts:
            await asyncio.wait(set(self._posts), timeout=1)

    def _post(self, about: Mapping[str, Any], message: str, count: int) -> None:
        event = build_event(
            about,
            "Warning",
            SKIP_REASON,
            message,
            instance=self._identity,
            now=datetime.datetime.now(datetime.UTC),
            action="Admit",
            count=count,
        )
        task = asyncio.create_task(self._send(event))
        self._posts.add(task)
        task.add_done_callback(self._posts.discard)

    async def _send(self, event: dict[str, Any]) -> None:
        try:
            await self._kube.post_event(event)
        except Exception as exc:
            _log.warning("Event %s not posted: %s", SKIP_REASON, exc)
