"""The operator's xDS feed: the ServiceStore's changes and GrpcTarget events, planned by the
same ``plan()`` as the ConfigMap, into the XdsStore its (real) ADS server serves.

The real control plane and real grpc clients are in tests/integration/operator/test_xds_operator.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from kuberesolver.core.endpointslices import service_view, slice_view
from kuberesolver.operator.runtime.informer import ServiceStore
from kuberesolver.operator.xds.feed import XdsFeed
from kuberesolver.xds.settings import XdsSettings

NS = "ns"


def svc(name: str, port: int = 80, ns: str = NS) -> Any:
    return service_view(
        {
            "metadata": {"namespace": ns, "name": name},
            "spec": {"ports": [{"name": "grpc", "port": port}]},
        }
    )


def slc(name: str, *addresses: str, port: int = 8080) -> Any:
    return slice_view(
        {
            "metadata": {"name": name},
            "addressType": "IPv4",
            "ports": [{"name": "grpc", "port": port}],
            "endpoints": [{"addresses": [a], "conditions": {"ready": True}} for a in addresses],
        }
    )


def target(service: str, uid: str = "u1", **spec: Any) -> dict[str, Any]:
    return {"metadata": {"uid": uid, "generation": 1}, "spec": {"service": service, **spec}}


class World:
    def __init__(self) -> None:
        self.feed: XdsFeed | None = None
        self.services = ServiceStore(self.wake)
        self.listed: list[tuple[str, str]] = []
        """The GrpcTargets that exist at start (the feed lists them once)."""

    async def list_targets(self) -> list[tuple[str, str]]:
        return list(self.listed)

    def wake(self, key: tuple[str, str]) -> None:
        if self.feed is not None:
            self.feed.wake_service(key)

    def sync(self) -> None:
        self.services.replace_services({})
        self.services.replace_slices({})


async def started(w: World, ready_timeout_s: float = 30.0) -> World:
    w.feed = XdsFeed(
        XdsSettings(address="127.0.0.1:0"),
        w.services,
        list_targets=w.list_targets,
        ready_timeout_s=ready_timeout_s,
    )
    await w.feed.start()
    return w


@pytest.fixture
async def world() -> AsyncIterator[World]:
    w = await started(World())
    yield w
    await feed(w).stop(0)


def feed(w: World) -> XdsFeed:
    assert w.feed is not None
    return w.feed


async def until(check: Callable[[], bool], turns: int = 50) -> None:
    """Let the loop run until ``check()`` holds (a bounded number of turns, no clock)."""
    for _ in range(turns):
        if check():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition did not hold")


def addresses(w: World, key: tuple[str, str] = (NS, "t")) -> list[str] | None:
    got = feed(w).store.get(key)
    return None if got is None else [e.address for e in got[0].endpoints]


async def serving_one(world: World) -> XdsFeed:
    """The feed once it serves target t: Service s with one endpoint, 10.0.0.1."""
    f = feed(world)
    world.sync()
    world.services.set_service((NS, "s"), svc("s"))
    world.services.set_slice((NS, "s-1"), (NS, "s"), slc("s-1", "10.0.0.1"))
    f.observe((NS, "t"), "u1", target("s"))
    await until(lambda: addresses(world) == ["10.0.0.1"])
    return f


async def test_nothing_is_served_before_the_first_list_then_the_plan_is(world: World) -> None:
    f = feed(world)
    world.services.set_service((NS, "s"), svc("s"))
    world.services.set_slice((NS, "s-1"), (NS, "s"), slc("s-1", "10.0.0.1"))
    f.observe((NS, "t"), "u1", target("s"))
    for _ in range(20):
        await asyncio.sleep(0)
    assert f.store.get((NS, "t")) is None  # half a world is not the truth
    world.sync()
    world.services.set_service((NS, "s"), svc("s"))
    world.services.set_slice((NS, "s-1"), (NS, "s"), slc("s-1", "10.0.0.1"))
    await until(lambda: addresses(world) == ["10.0.0.1"])
    snapshot = f.store.get((NS, "t"))
    assert snapshot is not None
    assert snapshot[0].endpoints[0].port == 8080
    assert f.store.listener((NS, "t")).endswith("/t.ns")
    assert f.configmap((NS, "t")) == "t"


async def test_a_slice_change_is_put_for_its_followers_only(world: World) -> None:
    f = feed(world)
    world.sync()
    world.services.set_service((NS, "s"), svc("s"))
    world.services.set_service((NS, "other"), svc("other"))
    f.observe((NS, "t"), "u1", target("s"))
    f.observe((NS, "o"), "u2", target("other"))
    await until(lambda: f.store.get((NS, "o")) is not None and addresses(world) == [])
    puts = f.puts
    world.services.set_slice((NS, "s-1"), (NS, "s"), slc("s-1", "10.0.0.1", "10.0.0.2"))
    await until(lambda: addresses(world) == ["10.0.0.1", "10.0.0.2"])
    assert f.puts == puts + 1  # the other target was not planned again
    world.services.set_slice((NS, "s-1"), (NS, "s"), slc("s-1", "10.0.0.2"))
    world.services.set_slice((NS, "s-2"), (NS, "s"), slc("s-2", "10.0.0.3"))
    await until(lambda: addresses(world) == ["10.0.0.2", "10.0.0.3"])
    assert f.puts == puts + 2  # two events already queued: one put
    assert f.store.get((NS, "t"))[0].revision == 3  # type: ignore[index]


async def test_bad_input_keeps_the_last_good_resources(world: World) -> None:
    f = await serving_one(world)
    puts = f.puts
    f.observe((NS, "t"), "u1", target("s", port="nope"))  # a port the Service lacks
    f.observe((NS, "bad"), "u3", target("Not A Name"))  # never valid: never served
    for _ in range(20):
        await asyncio.sleep(0)
    assert f.puts == puts
    assert addresses(world) == ["10.0.0.1"]
    assert f.store.get((NS, "bad")) is None
    world.services.set_slice((NS, "s-1"), (NS, "s"), slc("s-1", "10.0.0.9"))
    for _ in range(20):
        await asyncio.sleep(0)
    assert addresses(world) == ["10.0.0.1"]  # still the last good: the spec is still bad
    f.observe((NS, "t"), "u1", target("s", port="grpc"))
    await until(lambda: addresses(world) == ["10.0.0.9"])


async def test_a_missing_service_serves_no_endpoints_and_a_deleted_target_nothing(
    world: World,
) -> None:
    f = await serving_one(world)
    world.services.set_slice((NS, "s-1"), None, None)
    world.services.set_service((NS, "s"), None)
    await until(lambda: addresses(world) == [])
    f.forget((NS, "t"), "other-uid")  # an older object's deletion: not this one
    assert f.store.get((NS, "t")) is not None
    f.forget((NS, "t"), "u1")
    assert f.store.get((NS, "t")) is None
    world.services.set_service((NS, "s"), svc("s"))
    for _ in range(20):
        await asyncio.sleep(0)
    assert f.store.get((NS, "t")) is None


async def test_a_status_write_plans_nothing_and_a_new_service_is_followed(world: World) -> None:
    f = feed(world)
    world.sync()
    world.services.set_service((NS, "s"), svc("s"))
    world.services.set_service((NS, "s2"), svc("s2"))
    world.services.set_slice((NS, "s2-1"), (NS, "s2"), slc("s2-1", "10.0.0.7"))
    f.observe((NS, "t"), "u1", target("s"))
    await until(lambda: addresses(world) == [])
    puts = f.puts
    f.observe((NS, "t"), "u1", {**target("s"), "status": {"revision": 9}})
    for _ in range(20):
        await asyncio.sleep(0)
    assert f.puts == puts
    f.observe((NS, "t"), "u1", target("s2"))
    await until(lambda: addresses(world) == ["10.0.0.7"])
    puts = f.puts
    world.services.set_slice((NS, "s-1"), (NS, "s"), slc("s-1", "10.0.0.1"))  # the old one
    for _ in range(20):
        await asyncio.sleep(0)
    assert f.puts == puts


async def test_no_stream_is_answered_until_the_targets_listed_at_start_are_seen() -> None:
    w = World()
    w.listed = [(NS, "t"), (NS, "gone")]
    f = feed(await started(w))
    try:
        w.sync()
        w.services.set_service((NS, "s"), svc("s"))
        for _ in range(20):
            await asyncio.sleep(0)
        assert f.server.held  # kopf has not shown the listed targets yet
        f.observe((NS, "t"), "u1", target("s"))
        f.forget((NS, "gone"), "u9")  # deleted since the list: seen too
        await until(lambda: not f.server.held)
        assert addresses(w) == []  # served in the same turn as the release
    finally:
        await f.stop(0)


async def test_a_listed_target_never_seen_holds_the_server_only_until_the_timeout() -> None:
    w = World()
    w.listed = [(NS, "never")]
    f = feed(await started(w, ready_timeout_s=0.2))
    try:
        w.sync()
        await asyncio.wait_for(f.server.wait_released(), timeout=10)
    finally:
        await f.stop(0)


async def test_a_failing_list_is_retried_and_the_server_released_at_the_deadline() -> None:
    w = World()
    calls = 0

    async def failing() -> list[tuple[str, str]]:
        nonlocal calls
        calls += 1
        raise OSError("the apiserver is away")

    w.list_targets = failing  # type: ignore[method-assign]
    f = feed(await started(w, ready_timeout_s=0.5))
    try:
        w.sync()
        await asyncio.wait_for(f.server.wait_released(), timeout=10)
        assert calls >= 1
    finally:
        await f.stop(0)


async def test_withheld_method_timeouts_are_logged_once_per_target(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    f = feed(world)
    assert f.server.method_timeouts == "auto"
    world.sync()
    world.services.set_service((NS, "s"), svc("s"))
    timed = {"methodConfig": [{"name": [{"service": "kr.test.Echo"}], "timeout": "1s"}]}
    f.observe((NS, "t"), "u1", target("s", serviceConfig=timed))
    f.observe((NS, "plain"), "u2", target("s"))
    await until(lambda: addresses(world) == [] and f.store.get((NS, "plain")) is not None)
    world.services.set_slice((NS, "s-1"), (NS, "s"), slc("s-1", "10.0.0.1"))
    await until(lambda: addresses(world) == ["10.0.0.1"])  # put again: no second line
    withheld = [
        r.getMessage() for r in caplog.records if "timeouts are not served" in r.getMessage()
    ]
    assert withheld == [
        "ns/t: xDS: its methodConfig timeouts are not served to grpc C-core clients (grpcio, "
        "C++), which end such calls 1-2 s early, grpc/grpc#34547; set the deadline on the call "
        "there (KUBERESOLVER_XDS_METHOD_TIMEOUTS=auto)"
    ]


async def test_the_method_timeouts_setting_reaches_the_server() -> None:
    for mode in ("all", "none"):
        f = XdsFeed(
            XdsSettings(address="127.0.0.1:0", method_timeouts=mode), ServiceStore(lambda _: None)
        )
        assert f.server.method_timeouts == mode
