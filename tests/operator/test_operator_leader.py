"""Leader election (pure parts) and the per-target tasks that run only while leading."""

from __future__ import annotations

import asyncio
import copy
import datetime
from typing import Any

from kuberesolver.operator.runtime.events import REPORTER, build_event
from kuberesolver.operator.runtime.hub import Hub, TargetKey, Trigger
from kuberesolver.operator.runtime.leader import (
    Action,
    LeaderElector,
    LeaseRecord,
    build_lease,
    decide,
)
from kuberesolver.operator.runtime.targets import Entry, Targets

NOW = datetime.datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=datetime.UTC)


def record(holder: str, duration_s: int = 8, rv: str = "1", transitions: int = 0) -> LeaseRecord:
    return LeaseRecord(holder, duration_s, transitions, "t", "a", rv)


def test_decide() -> None:
    assert decide(None, "me", unchanged_for_s=0) is Action.CREATE
    assert decide(record("me"), "me", unchanged_for_s=100) is Action.RENEW
    assert decide(record("other"), "me", unchanged_for_s=7.9) is Action.WAIT
    assert decide(record("other"), "me", unchanged_for_s=8.0) is Action.TAKE_OVER
    assert decide(record(""), "me", unchanged_for_s=0) is Action.TAKE_OVER  # released


def test_build_lease_counts_transitions_and_releases() -> None:
    first = build_lease("ns", "l", "me", 8, NOW)
    assert first["spec"] == {
        "holderIdentity": "me",
        "leaseDurationSeconds": 8,
        "acquireTime": "2026-01-01T12:00:00.123456Z",
        "renewTime": "2026-01-01T12:00:00.123456Z",
        "leaseTransitions": 0,
    }
    assert "resourceVersion" not in first["metadata"]
    later = NOW + datetime.timedelta(seconds=2)
    renewed = build_lease(
        "ns", "l", "me", 8, later, LeaseRecord.of({**first, "metadata": {"resourceVersion": "5"}})
    )
    assert renewed["metadata"]["resourceVersion"] == "5"
    assert renewed["spec"]["acquireTime"] == first["spec"]["acquireTime"]
    assert renewed["spec"]["renewTime"] == "2026-01-01T12:00:02.123456Z"
    assert renewed["spec"]["leaseTransitions"] == 0
    taken = build_lease("ns", "l", "you", 8, later, record("me", transitions=3))
    assert taken["spec"]["leaseTransitions"] == 4
    assert taken["spec"]["acquireTime"] == renewed["spec"]["renewTime"]
    released = build_lease("ns", "l", "", 8, later, record("me", transitions=3))
    assert (released["spec"]["holderIdentity"], released["spec"]["leaseDurationSeconds"]) == ("", 1)
    assert released["spec"]["leaseTransitions"] == 3


def test_events_are_reported_as_kuberesolver() -> None:
    target = {"apiVersion": "kuberesolver.io/v1alpha1", "kind": "GrpcTarget",
              "metadata": {"name": "gt", "namespace": "ns", "uid": "u1"}}  # fmt: skip
    event = build_event(target, "Warning", "ServiceNotFound", "x" * 5000, instance="pod-a", now=NOW)
    assert (event["reportingComponent"], event["source"]["component"]) == (REPORTER, REPORTER)
    assert event["reportingInstance"] == "pod-a"
    assert event["involvedObject"]["uid"] == "u1"
    assert event["metadata"] == {"generateName": "kuberesolver-", "namespace": "ns"}
    assert len(event["message"]) == 1024


async def test_targets_run_only_while_leading_and_wake_on_new_generations() -> None:
    runs: dict[TargetKey, int] = {}
    started = asyncio.Event()

    async def run(key: TargetKey, entry: Entry, trigger: Trigger) -> None:
        while not trigger.closed:
            if await trigger.wait(10):
                trigger.consume()
                runs[key] = runs.get(key, 0) + 1
                entry.planned_generation = entry.body["metadata"]["generation"]
                started.set()

    hub = Hub()
    targets = Targets(hub, run)
    a = ("ns", "a")
    targets.observe(a, "u1", {"metadata": {"generation": 1}})
    assert targets.running == 0  # a standby runs nothing
    targets.lead()
    assert targets.running == 1
    hub.wake_target(a)
    await asyncio.wait_for(started.wait(), 5)
    assert runs[a] == 1
    # A status write of our own (same generation) wakes nothing; a new spec does.
    targets.observe(a, "u1", {"metadata": {"generation": 1}, "status": {}})
    await asyncio.sleep(0.01)
    assert runs[a] == 1
    targets.observe(a, "u1", {"metadata": {"generation": 2}})
    for _ in range(500):
        if runs[a] == 2:
            break
        await asyncio.sleep(0.01)
    assert runs[a] == 2
    # A new object of the same name replaces the loop; a deletion ends it.
    targets.observe(a, "u2", {"metadata": {"generation": 1}})
    entry = targets.get(a)
    assert entry is not None
    assert entry.uid == "u2"
    assert targets.running == 1
    await targets.follow()  # another replica leads now
    assert targets.running == 0
    assert len(hub) == 0
    targets.lead()
    targets.forget(a, "u-other")  # another uid: not this object
    assert targets.running == 1
    targets.forget(a, "u2")
    assert len(targets) == 0
    await targets.close()


class _Leases:
    """The Lease API's conditional-update rule, in memory: a stale resourceVersion gets 409."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.version = 0

    def _store(self, body: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        self.lease = copy.deepcopy(body)
        self.lease["metadata"]["resourceVersion"] = str(self.version)
        return copy.deepcopy(self.lease)

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.lease)

    async def create_lease(self, body: dict[str, Any]) -> dict[str, Any]:
        assert self.lease is None
        return self._store(body)

    async def replace_lease(self, body: dict[str, Any]) -> dict[str, Any]:
        assert self.lease is not None
        if body["metadata"].get("resourceVersion") != self.lease["metadata"]["resourceVersion"]:
            raise RuntimeError("409 Conflict")
        return self._store(body)


def _elector(api: _Leases, started: asyncio.Event) -> LeaderElector:
    """An elector on ``api`` that sets ``started`` once it leads."""

    async def on_start() -> None:
        started.set()

    async def on_stop() -> None:
        return None

    return LeaderElector(
        api, namespace="ns", name="l", identity="me", duration_s=8, retry_s=0.05,
        renew_deadline_s=6, on_start=on_start, on_stop=on_stop,
    )  # fmt: skip


async def test_close_releases_even_after_a_renewal_it_did_not_see() -> None:
    """A renewal that lands after the elector's last read must not keep the Lease held."""
    api, started = _Leases(), asyncio.Event()
    elector = _elector(api, started)
    task = asyncio.create_task(elector.run())
    await asyncio.wait_for(started.wait(), 5)
    assert api.lease is not None
    api._store(api.lease)  # our own in-flight renewal landed: same holder, a new version
    await elector.close()
    await asyncio.wait_for(task, 5)
    assert api.lease["spec"]["holderIdentity"] == ""


async def test_the_metrics_thread_sees_whether_this_replica_leads() -> None:
    """The metrics server scrapes on its own thread, where no event loop runs."""
    api, started = _Leases(), asyncio.Event()
    elector = _elector(api, started)
    assert await asyncio.to_thread(elector.leading_seen_from_a_thread) is False
    task = asyncio.create_task(elector.run())
    await asyncio.wait_for(started.wait(), 5)
    assert await asyncio.to_thread(elector.leading_seen_from_a_thread) is True
    await elector.close()
    await asyncio.wait_for(task, 5)
    assert await asyncio.to_thread(elector.leading_seen_from_a_thread) is False
