"""The status lane: newest status wins, a 404 ends the target's loop, failures are retried,
and nothing is sent while the replica does not lead."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from kuberesolver.operator.runtime.kube import ApiError
from kuberesolver.operator.runtime.status_writer import StatusWriter


class Api:
    """Records patches; ``fail`` maps a target name to the errors its next patches raise."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.fail: dict[str, list[Exception]] = {}
        self.gate = asyncio.Event()
        self.gate.set()
        self.called = asyncio.Event()

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        await self.gate.wait()
        self.called.set()
        errors = self.fail.get(name)
        if errors:
            raise errors.pop(0)
        self.sent.append((name, status))

    async def until(self, done: Callable[[], bool]) -> None:
        """Until ``done()``, checked after every patch (10 s at most)."""
        async with asyncio.timeout(10):
            while not done():
                self.called.clear()
                await self.called.wait()
                await asyncio.sleep(0)  # let the writer finish what it was doing


async def settle(writer: StatusWriter, api: Api, count: int) -> None:
    await api.until(lambda: len(api.sent) >= count and not len(writer))


def test_only_the_newest_pending_status_is_sent() -> None:
    async def scenario() -> list[tuple[str, dict[str, Any]]]:
        api = Api()
        api.gate.clear()  # the lane is busy: statuses pile up
        writer = StatusWriter(api, leading=lambda: True, writers=1)
        writer.submit(("ns", "a"), {"revision": 1}, lambda: None)
        await asyncio.sleep(0.01)  # the writer took revision 1 and waits on the gate
        for revision in (2, 3, 4):
            writer.submit(("ns", "a"), {"revision": revision}, lambda: None)
        writer.submit(("ns", "b"), {"revision": 1}, lambda: None)
        api.gate.set()
        await settle(writer, api, 3)
        await writer.close()
        return api.sent

    assert asyncio.run(scenario()) == [
        ("a", {"revision": 1}),
        ("a", {"revision": 4}),
        ("b", {"revision": 1}),
    ]


def test_a_404_ends_the_targets_loop() -> None:
    async def scenario() -> tuple[int, int]:
        api = Api()
        api.fail["gone"] = [ApiError(404, "not found")]
        gone: list[str] = []
        writer = StatusWriter(api, leading=lambda: True)
        writer.submit(("ns", "gone"), {"revision": 1}, lambda: gone.append("gone"))
        await api.until(lambda: bool(gone))
        await writer.close()
        return len(gone), len(api.sent)

    assert asyncio.run(scenario()) == (1, 0)


def test_a_failure_is_reported_and_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("kuberesolver.operator.runtime.status_writer.backoff_s", lambda n: 0.01 * n)

    async def scenario() -> tuple[list[str], list[tuple[str, dict[str, Any]]]]:
        api = Api()
        api.fail["a"] = [ApiError(500, "boom"), ApiError(0, "refused")]
        errors: list[str] = []
        writer = StatusWriter(
            api, leading=lambda: True, on_error=lambda k, e: errors.append(str(e))
        )
        writer.submit(("ns", "a"), {"revision": 7}, lambda: None)
        await settle(writer, api, 1)
        await writer.close()
        return errors, api.sent

    assert asyncio.run(scenario()) == (["boom", "refused"], [("a", {"revision": 7})])


def test_nothing_is_sent_by_a_replica_that_does_not_lead() -> None:
    async def scenario() -> int:
        api = Api()
        leading = False
        writer = StatusWriter(api, leading=lambda: leading, writers=1)
        writer.submit(("ns", "a"), {"revision": 1}, lambda: None)
        await asyncio.sleep(0)  # the one writer takes "a" (and drops it)
        assert not len(writer)
        leading = True
        writer.submit(("ns", "b"), {"revision": 1}, lambda: None)
        await settle(writer, api, 1)
        await writer.close()
        return len(api.sent)

    assert asyncio.run(scenario()) == 1
