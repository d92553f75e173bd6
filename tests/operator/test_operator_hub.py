"""The coalescing loop and the wake-up hub, without kopf."""

from __future__ import annotations

import asyncio

from kuberesolver.operator.runtime.hub import Hub, Trigger, WriteBudget, run_coalesced
from testenv.wait import until_async

UNLIMITED = WriteBudget(1, 0)


async def test_hub_wakes_followers_only() -> None:
    hub = Hub()
    a = hub.attach(("ns", "a"), "uid-a")
    b = hub.attach(("ns", "b"), "uid-b")
    hub.follow(("ns", "a"), ("ns", "svc"))
    hub.follow(("ns", "b"), ("ns", "other"))
    assert hub.wake_service(("ns", "svc")) == 1
    assert await a.wait(0.01)
    assert not await b.wait(0.01)
    hub.follow(("ns", "a"), ("ns", "other"))
    assert hub.followers(("ns", "svc")) == frozenset()
    assert hub.followers(("ns", "other")) == {("ns", "a"), ("ns", "b")}
    assert len(hub) == 2


async def test_hub_gone_matches_uid_and_detach_is_idempotent() -> None:
    hub = Hub()
    t = hub.attach(("ns", "a"), "uid-1")
    hub.gone(("ns", "a"), "uid-other")
    assert not t.closed
    hub.gone(("ns", "a"), "uid-1")
    assert t.closed
    assert len(hub) == 0
    hub.detach(("ns", "a"), t)
    # A new object of the same name replaces (and closes) the old trigger.
    old = hub.attach(("ns", "b"), "1")
    new = hub.attach(("ns", "b"), "2")
    assert old.closed
    assert not new.closed
    hub.detach(("ns", "b"), old)  # the stale one: no effect
    assert len(hub) == 1
    hub.close()
    assert new.closed


async def test_trigger_remembers_the_first_wake() -> None:
    loop = asyncio.get_running_loop()
    t = Trigger()
    assert t.consume() is None
    before = loop.time()
    t.wake()
    after_first = loop.time()
    await asyncio.sleep(0.05)  # the loop clock moves on: a later wake has a later time
    t.wake()
    assert loop.time() > after_first
    first = t.consume()
    assert first is not None
    assert before <= first <= after_first  # the first wake's time, not the last one's
    assert t.consume() is None  # consumed
    assert not await t.wait(0.01)


class Runs:
    """A reconcile that counts its runs and fails the first ``failing`` of them."""

    def __init__(self, failing: int = 0) -> None:
        self.count = 0
        self.failing = failing

    async def __call__(self, first: float | None) -> None:
        self.count += 1
        if self.count <= self.failing:
            raise RuntimeError(f"boom {self.count}")


async def test_resync_runs_without_wakes() -> None:
    trigger, reconcile = Trigger(), Runs()
    task = asyncio.create_task(run_coalesced(trigger, reconcile, budget=UNLIMITED, resync_s=0.05))
    await until_async(lambda: reconcile.count >= 3, timeout_s=10)
    trigger.close()
    await asyncio.wait_for(task, 5)


async def test_failures_are_reported_and_retried_with_backoff() -> None:
    trigger, reconcile = Trigger(), Runs(failing=2)
    errors: list[BaseException] = []
    task = asyncio.create_task(
        run_coalesced(
            trigger, reconcile, budget=UNLIMITED, resync_s=60,
            backoff_s=lambda n: 0.01, on_error=errors.append,
        )
    )  # fmt: skip
    await until_async(lambda: reconcile.count >= 3, timeout_s=10)
    assert [str(e) for e in errors] == ["boom 1", "boom 2"]
    trigger.close()
    await asyncio.wait_for(task, 5)


async def test_close_ends_the_loop_during_the_window() -> None:
    trigger, reconcile = Trigger(), Runs()
    task = asyncio.create_task(
        run_coalesced(trigger, reconcile, budget=WriteBudget(1, 10_000), resync_s=60)
    )
    await asyncio.sleep(0.02)
    trigger.wake()
    await asyncio.sleep(0.02)
    trigger.close()
    await asyncio.wait_for(task, 5)  # not after the 10 s window
    assert reconcile.count == 1
