"""Each target's write budget: a burst at once, then a rate; on the loop's own (virtual) clock.

The coalescing loop runs here on :mod:`testenv.virtual_clock`: timers fire in
order and the clock jumps to them, so every time below is exact and no
assertion depends on the machine's load.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kuberesolver.operator.runtime.hub import Bucket, Trigger, WriteBudget, run_coalesced
from kuberesolver.operator.settings import DEFAULTS, Settings, SettingsError
from testenv.virtual_clock import virtual_clock_loop

QUIET_S = 60.0
"""Long enough for any bucket here to be full again."""


@dataclass
class Run:
    started: float
    first_wake: float | None
    state: int
    """The state the run read: how many changes had been made when it began."""


@dataclass
class World:
    """One target: a counter of changes, its trigger, and the runs of its loop."""

    trigger: Trigger = field(default_factory=Trigger)
    state: int = 0
    runs: list[Run] = field(default_factory=list)

    def change(self) -> float:
        self.state += 1
        self.trigger.wake()
        return asyncio.get_running_loop().time()


def run_world(
    budget: WriteBudget,
    script: Callable[[World], Awaitable[None]],
    *,
    reconcile_s: float = 0.0,
) -> World:
    """Run the loop with ``budget`` while ``script`` makes changes; then close it."""
    world = World()

    async def reconcile(first_wake: float | None) -> None:
        loop = asyncio.get_running_loop()
        world.runs.append(Run(loop.time(), first_wake, world.state))
        if reconcile_s:
            await asyncio.sleep(reconcile_s)  # the API write

    async def main() -> None:
        task = asyncio.create_task(
            run_coalesced(world.trigger, reconcile, budget=budget, resync_s=1e9)
        )
        await asyncio.sleep(QUIET_S)  # the initial run, then a quiet period
        await script(world)
        await asyncio.sleep(QUIET_S)
        world.trigger.close()
        await task

    with virtual_clock_loop() as loop:
        loop.run_until_complete(main())
    return world


def not_ready_then_ready(
    world_times: list[float], gap_s: float
) -> Callable[[World], Awaitable[None]]:
    async def script(world: World) -> None:
        world_times.append(world.change())  # a Pod added, not ready
        await asyncio.sleep(gap_s)
        world_times.append(world.change())  # Ready a moment later

    return script


def test_the_ready_change_after_a_not_ready_add_is_written_within_50_ms() -> None:
    # The ConfigMap write takes 20 ms; the Pod turns Ready 30 ms after it was added.
    changed: list[float] = []
    world = run_world(DEFAULTS.write_budget, not_ready_then_ready(changed, 0.03), reconcile_s=0.02)
    add, ready = changed
    runs = [r for r in world.runs if r.started >= add]
    assert [r.state for r in runs] == [1, 2]
    assert runs[0].started == add  # the first change after a quiet period: at once
    assert runs[1].started - ready <= 0.050
    assert runs[1].first_wake == ready


def test_a_fixed_window_holds_the_ready_change_back() -> None:
    # The same story under the old fixed window ("1/300ms"): the Ready write waits it out.
    changed: list[float] = []
    world = run_world(WriteBudget(1, 300), not_ready_then_ready(changed, 0.03), reconcile_s=0.02)
    add, ready = changed
    runs = [r for r in world.runs if r.started >= add]
    assert [r.state for r in runs] == [1, 2]
    assert runs[1].started == pytest.approx(add + 0.300)
    assert runs[1].started - ready == pytest.approx(0.270)


def storm(gaps_s: Sequence[float], times: list[float]) -> Callable[[World], Awaitable[None]]:
    async def script(world: World) -> None:
        for gap in gaps_s:
            if gap:
                await asyncio.sleep(gap)
            times.append(world.change())

    return script


def check_storm(budget: WriteBudget, world: World, times: list[float], reconcile_s: float) -> None:
    start, last = times[0], times[-1]
    runs = [r for r in world.runs if r.started >= start]
    # No change is lost: the last run read the last state, and began after the last change.
    assert runs[-1].state == len(times)
    assert runs[-1].started >= last
    # ... and soon: within one token's refill (plus a run in flight) of the last change.
    assert runs[-1].started - last <= budget.interval_s + reconcile_s + 1e-9
    # At most the budget: the burst, plus one run per refill over the storm's span.
    span = runs[-1].started - start
    # (A token counts as there up to 1 us early: the loop's float clock.)
    if budget.interval_s:
        assert len(runs) <= budget.burst + (span + 1e-6) / budget.interval_s
    # Every run is a write of something new (a run per wake-up, or fewer).
    assert len(runs) <= len(times)
    assert [r.state for r in runs] == sorted({r.state for r in runs})


def test_a_storm_of_1000_changes_is_written_within_the_budget() -> None:
    budget = DEFAULTS.write_budget
    times: list[float] = []
    world = run_world(budget, storm([0.001] * 1000, times), reconcile_s=0.005)
    check_storm(budget, world, times, 0.005)
    runs = [r for r in world.runs if r.started >= times[0]]
    # About one second of changes: the burst, then one write per 300 ms.
    assert len(runs) <= budget.burst + 1.0 / budget.interval_s + 1
    assert len(runs) < 10  # out of 1,000 changes


def test_the_old_window_is_one_write_per_window() -> None:
    budget = WriteBudget.parse("1/300ms")
    times: list[float] = []
    world = run_world(budget, storm([0.001] * 1000, times))
    check_storm(budget, world, times, 0.0)
    starts = [r.started for r in world.runs if r.started >= times[0]]
    assert all(b - a >= 0.300 - 1e-9 for a, b in itertools.pairwise(starts))


@settings(max_examples=60, deadline=None)
@given(
    burst=st.integers(1, 8),
    window_ms=st.integers(1, 3000),
    gaps_ms=st.lists(st.integers(0, 50), min_size=1, max_size=1000),
    reconcile_ms=st.integers(0, 100),
)
def test_any_storm_stays_within_the_budget_and_the_last_state_lands(
    burst: int, window_ms: int, gaps_ms: list[int], reconcile_ms: int
) -> None:
    budget = WriteBudget(burst, window_ms)
    times: list[float] = []
    reconcile_s = reconcile_ms / 1000
    world = run_world(budget, storm([g / 1000 for g in gaps_ms], times), reconcile_s=reconcile_s)
    check_storm(budget, world, times, reconcile_s)
    # After a quiet period, the first change is written at once.
    first = next(r for r in world.runs if r.started >= times[0])
    assert first.started == times[0]


@given(burst=st.integers(1, 20), window_ms=st.integers(0, 10_000), seconds=st.floats(0, 100))
def test_the_bucket_gives_a_burst_then_a_rate(burst: int, window_ms: int, seconds: float) -> None:
    bucket = Bucket(WriteBudget(burst, window_ms))
    now = 1000.0
    for _ in range(burst):  # full: the whole burst at once
        assert bucket.delay(now) == 0
        bucket.spend(now)
    interval = window_ms / 1000 / burst
    assert bucket.delay(now) == pytest.approx(interval)
    later = now + seconds
    refilled = min(burst, int(seconds / interval + 1e-9)) if interval else burst
    for _ in range(refilled):
        assert bucket.delay(later) == pytest.approx(0, abs=1e-9)
        bucket.spend(later)


@pytest.mark.parametrize(
    ("text", "burst", "window_ms"),
    [("5/1500ms", 5, 1500), ("1/300ms", 1, 300), (" 2 / 1.5s ", 2, 1500), ("1/0ms", 1, 0)],
)
def test_a_budget_is_written_with_its_unit(text: str, burst: int, window_ms: float) -> None:
    budget = WriteBudget.parse(text)
    assert (budget.burst, budget.window_ms) == (burst, window_ms)
    assert WriteBudget.parse(str(budget)) == budget


@pytest.mark.parametrize("text", ["300", "5/300", "5/300 min", "0/300ms", "-1/300ms", "x/1s", ""])
def test_a_budget_without_a_unit_or_a_burst_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"BURST/WINDOW|at least 1"):
        WriteBudget.parse(text)


def test_the_setting_and_its_deprecated_alias(caplog: pytest.LogCaptureFixture) -> None:
    assert Settings.resolve(environ={}).write_budget == WriteBudget(5, 1500)
    env = {"KUBERESOLVER_WRITE_BUDGET": "3/600ms"}
    assert Settings.resolve(environ=env).write_budget == WriteBudget(3, 600)
    assert Settings.resolve(write_budget="2/1s", environ=env).write_budget == WriteBudget(2, 1000)
    assert not caplog.records
    # The old fixed window, with a warning that names its replacement.
    old = Settings.resolve(environ={"KUBERESOLVER_DEBOUNCE_MS": "200"})
    assert old.write_budget == WriteBudget(1, 200)
    assert "KUBERESOLVER_DEBOUNCE_MS is deprecated" in caplog.text
    assert "KUBERESOLVER_WRITE_BUDGET=1/200ms" in caplog.text
    caplog.clear()
    both = {**env, "KUBERESOLVER_DEBOUNCE_MS": "200"}
    assert Settings.resolve(environ=both).write_budget == WriteBudget(3, 600)
    assert "deprecated and ignored" in caplog.text
    with pytest.raises(SettingsError, match=r"KUBERESOLVER_WRITE_BUDGET='soon': expected"):
        Settings.resolve(environ={"KUBERESOLVER_WRITE_BUDGET": "soon"})
    with pytest.raises(SettingsError, match="KUBERESOLVER_DEBOUNCE_MS='soon': not a number"):
        Settings.resolve(environ={"KUBERESOLVER_DEBOUNCE_MS": "soon"})
    with pytest.raises(SettingsError, match="at most"):
        Settings.resolve(environ={"KUBERESOLVER_WRITE_BUDGET": "5/7200s"})
