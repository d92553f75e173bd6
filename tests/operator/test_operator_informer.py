"""The operator's store of Services and EndpointSlices: what a list or an event changes, and
whom it wakes. The loop that feeds it is the shared reflector (tested in tests/kube and
tests/integration/test_reflector.py); it runs against the real apiserver in every
tests/integration/operator test."""

from __future__ import annotations

import asyncio
from typing import Any

from kuberesolver.core.endpointslices import service_view, slice_view
from kuberesolver.operator.runtime.informer import ServiceStore


def svc(ns: str, name: str, port: int = 80) -> Any:
    return service_view(
        {"metadata": {"namespace": ns, "name": name}, "spec": {"ports": [{"port": port}]}}
    )


def slc(name: str, *addresses: str) -> Any:
    return slice_view(
        {
            "metadata": {"name": name},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [a]} for a in addresses],
        }
    )


def make() -> tuple[ServiceStore, list[tuple[str, str]]]:
    woken: list[tuple[str, str]] = []
    return ServiceStore(woken.append), woken


def test_services_wake_only_on_change() -> None:
    store, woken = make()
    store.set_service(("a", "s"), svc("a", "s"))
    store.set_service(("a", "s"), svc("a", "s"))  # the same view: nothing to tell
    assert woken == [("a", "s")]
    store.set_service(("a", "s"), svc("a", "s", 81))
    store.set_service(("a", "s"), None)
    store.set_service(("a", "s"), None)  # deleting what is gone: nothing
    assert woken == [("a", "s")] * 3
    assert store.lookup(("a", "s")) == (None, [])


def test_a_relist_removes_what_is_gone_and_wakes_its_followers() -> None:
    store, woken = make()
    store.replace_services({("a", "s"): svc("a", "s"), ("a", "t"): svc("a", "t")})
    woken.clear()
    store.replace_services({("a", "t"): svc("a", "t")})
    assert woken == [("a", "s")]
    assert store.lookup(("a", "s"))[0] is None
    assert store.lookup(("a", "t"))[0] == svc("a", "t")
    assert len(store) == 1


def test_slices_are_grouped_by_service_in_name_order() -> None:
    store, woken = make()
    store.set_slice(("a", "s-2"), ("a", "s"), slc("s-2", "10.0.0.2"))
    store.set_slice(("a", "s-1"), ("a", "s"), slc("s-1", "10.0.0.1"))
    store.set_slice(("a", "s-1"), ("a", "s"), slc("s-1", "10.0.0.1"))
    assert woken == [("a", "s"), ("a", "s")]
    assert [v["name"] for v in store.lookup(("a", "s"))[1]] == ["s-1", "s-2"]
    assert store.endpoint_slices == 2


def test_a_slice_that_changes_service_leaves_the_old_one() -> None:
    store, woken = make()
    store.set_slice(("a", "x"), ("a", "s"), slc("x", "10.0.0.1"))
    woken.clear()
    store.set_slice(("a", "x"), ("a", "t"), slc("x", "10.0.0.1"))
    assert woken == [("a", "s"), ("a", "t")]
    assert store.lookup(("a", "s"))[1] == []
    assert len(store.lookup(("a", "t"))[1]) == 1


def test_a_deleted_slice_and_a_relist_without_it() -> None:
    store, woken = make()
    store.replace_slices(
        {("a", "x"): (("a", "s"), slc("x", "10.0.0.1")), ("a", "y"): (("a", "s"), slc("y"))}
    )
    woken.clear()
    store.set_slice(("a", "x"), None, None)
    assert woken == [("a", "s")]
    store.replace_slices({})
    assert store.lookup(("a", "s"))[1] == []
    assert store.endpoint_slices == 0


def test_plans_wait_for_both_first_lists() -> None:
    async def scenario() -> list[str]:
        store, _ = make()
        seen: list[str] = []

        async def planner() -> None:
            await store.wait_synced("services", "endpointslices")
            seen.append("planned")

        task = asyncio.create_task(planner())
        await asyncio.sleep(0)
        store.replace_services({})
        await asyncio.sleep(0)
        seen.append(f"after services: {store.synced('services', 'endpointslices')}")
        store.replace_slices({})
        await task
        return seen

    assert asyncio.run(scenario()) == ["after services: False", "planned"]
