"""Wake-ups and coalescing: how watch events reach the one loop per GrpcTarget.

The operator's own reflectors (:mod:`.informer`) see every Service and
EndpointSlice event; the runtime then calls :meth:`Hub.wake_service`, which
sets the :class:`Trigger` of each target that follows that Service. Each
target's loop (:func:`run_coalesced`) spends a :class:`WriteBudget`, a token
bucket: after a quiet period the first ``burst`` wake-ups each run at once (a
Pod added not ready, then Ready a moment later, is two prompt writes); a
target that keeps changing runs once per ``window_ms / burst`` however many
wake-ups arrive, so a rollout's storm of slice updates is coalesced. The last
wake-up always gets its run.

Pure asyncio, no kopf: the loop is tested on its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Final, TypeAlias

from kuberesolver.core.backoff import backoff_s
from kuberesolver.operator.settings import WriteBudget

__all__ = [
    "Bucket",
    "Hub",
    "ServiceKey",
    "TargetKey",
    "Trigger",
    "WriteBudget",
    "run_coalesced",
]

TargetKey: TypeAlias = tuple[str, str]
"""``(namespace, name)`` of a GrpcTarget."""
ServiceKey: TypeAlias = tuple[str, str]
"""``(namespace, name)`` of a Service."""

_log = logging.getLogger(__name__)

_TOLERANCE_S: Final = 1e-6


class Bucket:
    """One target's tokens of a :class:`WriteBudget` (pure: the caller passes the time).

    Kept as the time the bucket would be full again (a GCRA's theoretical
    arrival time), so no float drift accumulates in a token count.
    """

    def __init__(self, budget: WriteBudget) -> None:
        self._interval = budget.interval_s
        self._slack = (budget.burst - 1) * budget.interval_s
        self._full_at = -float("inf")

    def delay(self, now: float) -> float:
        """How long from ``now`` until a token is there (0: one is there now).

        Less than a microsecond counts as none: the sums of intervals carry
        float rounding, and a wait that short would only cost a loop turn.
        """
        delay = self._full_at - self._slack - now
        return delay if delay > _TOLERANCE_S else 0.0

    def spend(self, now: float) -> None:
        """Take a token at ``now`` (call only once :meth:`delay` is 0)."""
        self._full_at = max(self._full_at, now) + self._interval


class Trigger:
    """One target's wake-up flag; remembers when the first pending wake-up came."""

    def __init__(self, uid: str = "") -> None:
        self.uid = uid
        self._event = asyncio.Event()
        self._first_wake: float | None = None
        self._closed = False
        self._closed_event = asyncio.Event()

    @property
    def closed(self) -> bool:
        return self._closed

    def wake(self) -> None:
        if self._first_wake is None:
            self._first_wake = asyncio.get_running_loop().time()
        self._event.set()

    def close(self) -> None:
        """Ask the loop to end (the target is gone or the operator stops). Idempotent."""
        self._closed = True
        self._closed_event.set()
        self._event.set()

    async def wait(self, timeout_s: float | None) -> bool:
        """Until woken, closed or ``timeout_s``; whether a wake-up (or close) came."""
        try:
            await asyncio.wait_for(self._event.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def sleep(self, delay_s: float) -> bool:
        """Sleep ``delay_s`` unless closed first; whether it was closed."""
        try:
            await asyncio.wait_for(self._closed_event.wait(), delay_s)
        except TimeoutError:
            return False
        return True

    def consume(self) -> float | None:
        """Clear the flag; the loop time of the first wake-up it held (``None`` for none)."""
        first, self._first_wake = self._first_wake, None
        if not self._closed:
            self._event.clear()
        return first


class Hub:
    """Which targets follow which Service, and their triggers."""

    def __init__(self) -> None:
        self._triggers: dict[TargetKey, Trigger] = {}
        self._follows: dict[TargetKey, ServiceKey] = {}
        self._followers: dict[ServiceKey, set[TargetKey]] = {}

    def __len__(self) -> int:
        return len(self._triggers)

    def attach(self, target: TargetKey, uid: str = "") -> Trigger:
        """A new trigger for ``target`` (an older one, from a previous object, is closed)."""
        old = self._triggers.get(target)
        if old is not None:
            old.close()
        trigger = Trigger(uid)
        self._triggers[target] = trigger
        return trigger

    def detach(self, target: TargetKey, trigger: Trigger) -> None:
        """Forget ``target`` if ``trigger`` is still its current one. Idempotent."""
        trigger.close()
        if self._triggers.get(target) is trigger:
            del self._triggers[target]
            self.follow(target, None)

    def follow(self, target: TargetKey, service: ServiceKey | None) -> None:
        """Make ``target`` follow ``service`` (``None``: nothing)."""
        before = self._follows.pop(target, None)
        if before is not None:
            followers = self._followers.get(before)
            if followers is not None:
                followers.discard(target)
                if not followers:
                    del self._followers[before]
        if service is not None:
            self._follows[target] = service
            self._followers.setdefault(service, set()).add(target)

    def followers(self, service: ServiceKey) -> frozenset[TargetKey]:
        return frozenset(self._followers.get(service, ()))

    def wake_service(self, service: ServiceKey) -> int:
        """Wake every target that follows ``service``; how many were woken."""
        targets = self._followers.get(service, ())
        for target in targets:
            self.wake_target(target)
        return len(targets)

    def wake_target(self, target: TargetKey) -> None:
        trigger = self._triggers.get(target)
        if trigger is not None:
            trigger.wake()

    def gone(self, target: TargetKey, uid: str) -> None:
        """The object ``target`` with ``uid`` was deleted: end its loop."""
        trigger = self._triggers.get(target)
        if trigger is not None and (not uid or trigger.uid in ("", uid)):
            self.detach(target, trigger)

    def close(self) -> None:
        for target, trigger in list(self._triggers.items()):
            self.detach(target, trigger)


async def run_coalesced(
    trigger: Trigger,
    reconcile: Callable[[float | None], Awaitable[None]],
    *,
    budget: WriteBudget,
    resync_s: float,
    backoff_s: Callable[[int], float] = backoff_s,
    on_error: Callable[[BaseException], None] | None = None,
) -> None:
    """Call ``reconcile`` whenever ``trigger`` is woken, within ``budget``.

    Runs once at the start, then on every wake-up, and every ``resync_s``
    without one. A wake-up that finds a token runs at once; otherwise the
    loop waits for the next token, and every wake-up meanwhile is served by
    that one run. ``reconcile`` gets the loop time of the first wake-up it
    serves (for latency metrics), or ``None`` for a resync. A failure is
    reported to ``on_error`` and retried with backoff; nothing else is done
    meanwhile, so a failure never publishes anything. Returns when the
    trigger is closed.
    """
    loop = asyncio.get_running_loop()
    bucket = Bucket(budget)
    failures = 0
    trigger.wake()
    while not trigger.closed:
        await trigger.wait(resync_s)
        if trigger.closed:
            return
        delay = bucket.delay(loop.time())
        if delay > 0 and await trigger.sleep(delay):
            return
        first_wake = trigger.consume()
        bucket.spend(loop.time())
        try:
            await reconcile(first_wake)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            failures += 1
            if on_error is not None:
                on_error(exc)
            else:
                _log.exception("reconcile failed (attempt %d)", failures)
            if await trigger.sleep(backoff_s(failures)):
                return
            trigger.wake()
        else:
            failures = 0
