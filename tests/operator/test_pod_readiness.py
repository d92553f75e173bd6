"""Readiness read from Pods before the slice controller copies it: only where the controller
would copy the same, and never over a newer slice. The real watch runs in
tests/integration/operator/test_xds_pod_readiness.py."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from kuberesolver.core.endpointslices import SliceView, slice_view
from kuberesolver.operator.logic.pod_readiness import (
    MANAGED_BY_CONTROLLER,
    PodView,
    overlay,
    pod_view,
)
from kuberesolver.operator.runtime.informer import ServiceStore

KCM = MANAGED_BY_CONTROLLER


def pod(
    ip: str = "10.0.0.1", ready: bool = True, rv: int = 20, deleting: bool = False
) -> dict[str, Any]:
    meta: dict[str, Any] = {"namespace": "a", "name": "p", "resourceVersion": str(rv)}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-06T00:00:00Z"
    return {
        "metadata": meta,
        "status": {
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def slc(
    *, ready: bool = False, rv: int = 10, managed_by: str = KCM, ip: str = "10.0.0.1"
) -> SliceView:
    return slice_view(
        {
            "metadata": {
                "name": "s-1",
                "resourceVersion": str(rv),
                "labels": {"endpointslice.kubernetes.io/managed-by": managed_by},
            },
            "addressType": "IPv4",
            "endpoints": [
                {
                    "addresses": [ip],
                    "conditions": {"ready": ready, "serving": ready, "terminating": False},
                    "targetRef": {"kind": "Pod", "name": "p", "namespace": "a"},
                }
            ],
        }
    )


def conditions(slices: list[SliceView]) -> tuple[bool, bool, bool]:
    ep = slices[0]["endpoints"][0]
    return ep["ready"], ep["serving"], ep["terminating"]


def view(**kwargs: Any) -> PodView:
    found = pod_view(pod(**kwargs))
    assert found is not None
    return found


def test_a_pod_view_keeps_its_ips_readiness_and_revision() -> None:
    assert view(ready=True, rv=7) == PodView(frozenset({"10.0.0.1"}), True, False, 7)
    assert view(ready=False, deleting=True).deleting
    assert pod_view({"metadata": {"name": "p"}, "status": {}}) is None  # no IP: in no slice


def test_a_newer_ready_pod_makes_its_endpoint_ready() -> None:
    assert conditions(overlay([slc(ready=False, rv=10)], {"p": view(rv=11)})) == (
        True,
        True,
        False,
    )


def test_an_older_pod_never_undoes_a_newer_slice() -> None:
    slices = [slc(ready=True, rv=30)]
    assert overlay(slices, {"p": view(ready=False, rv=29)}) is not slices
    assert conditions(overlay(slices, {"p": view(ready=False, rv=29)})) == (True, True, False)


def test_a_slice_of_another_controller_stays_the_truth() -> None:
    slices = [slc(ready=False, managed_by="tests.kuberesolver.io")]
    assert conditions(overlay(slices, {"p": view(rv=99)})) == (False, False, False)


def test_a_pod_recreated_under_the_same_name_has_other_ips() -> None:
    assert conditions(overlay([slc(ip="10.0.0.1")], {"p": view(ip="10.0.0.9", rv=99)})) == (
        False,
        False,
        False,
    )


def test_a_deleted_pod_drains_and_publish_not_ready_keeps_it_ready() -> None:
    slices = [slc(ready=True, rv=10)]
    assert conditions(overlay(slices, {"p": view(deleting=True, rv=11)})) == (False, True, True)
    assert conditions(overlay(slices, {"p": view(ready=False, rv=11)}, True)) == (
        True,
        False,
        False,
    )


@given(
    ready=st.booleans(),
    pod_ready=st.booleans(),
    deleting=st.booleans(),
    slice_rv=st.integers(0, 50),
    pod_rv=st.integers(0, 50),
    managed=st.sampled_from([KCM, "other", ""]),
    same_ip=st.booleans(),
)
def test_only_conditions_change_and_only_from_a_newer_pod_of_the_same_ip(
    ready: bool,
    pod_ready: bool,
    deleting: bool,
    slice_rv: int,
    pod_rv: int,
    managed: str,
    same_ip: bool,
) -> None:
    slices = [slc(ready=ready, rv=slice_rv, managed_by=managed)]
    pods = {"p": view(ip="10.0.0.1" if same_ip else "10.0.0.2", ready=pod_ready, rv=pod_rv,
                      deleting=deleting)}  # fmt: skip
    out = overlay(slices, pods)
    before, after = slices[0]["endpoints"][0], out[0]["endpoints"][0]
    assert {k: v for k, v in after.items() if k not in ("ready", "serving", "terminating")} == {
        k: v for k, v in before.items() if k not in ("ready", "serving", "terminating")
    }
    if managed != KCM or pod_rv <= slice_rv or not same_ip:
        assert out[0] is slices[0]
    else:
        assert conditions(out) == (pod_ready and not deleting, pod_ready, deleting)


def test_the_store_wakes_the_services_listing_a_pod_and_reads_it_live() -> None:
    woken: list[tuple[str, str]] = []
    pod_woken: list[tuple[str, str]] = []
    store = ServiceStore(woken.append, pod_woken.append)
    store.set_slice(("a", "s-1"), ("a", "svc"), slc(ready=False, rv=10))
    store.set_pod(("a", "p"), view(ready=True, rv=11))
    assert pod_woken == [("a", "svc")]
    store.set_pod(("a", "p"), view(ready=True, rv=12))  # same readiness: no wake
    assert pod_woken == [("a", "svc")]
    assert conditions(store.lookup_live(("a", "svc"))[1]) == (True, True, False)
    assert conditions(store.lookup(("a", "svc"))[1]) == (False, False, False)  # ConfigMaps' view
    store.set_pod(("a", "other"), view(ready=False, rv=13))  # listed nowhere
    assert pod_woken == [("a", "svc")]
    store.set_slice(("a", "s-1"), None, None)
    store.set_pod(("a", "p"), view(ready=False, rv=14))  # no longer listed
    assert pod_woken == [("a", "svc")]
    store.replace_pods({})
    assert store.pods == 0
    assert store.synced("pods")


def test_without_pod_readiness_the_store_keeps_no_pods() -> None:
    store = ServiceStore(lambda key: None)
    store.set_slice(("a", "s-1"), ("a", "svc"), slc(ready=False))
    store.set_pod(("a", "p"), view(rv=99))
    assert store.pods == 0
    assert conditions(store.lookup_live(("a", "svc"))[1]) == (False, False, False)
