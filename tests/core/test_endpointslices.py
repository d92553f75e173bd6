"""EndpointSlices to endpoints: pure, on dicts shaped like the API's objects."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kuberesolver.core.endpointslices import (
    EndpointCache,
    PortError,
    ServicePort,
    build_endpoints,
    pick_family,
    resolve_port,
    service_view,
    slice_view,
)
from kuberesolver.core.snapshot import Endpoint


def svc(ports: list[dict[str, Any]], families: list[str] | None = None, **ann: str) -> Any:
    return service_view(
        {
            "metadata": {"name": "greeter", "namespace": "ns", "annotations": ann},
            "spec": {"ports": ports, **({"ipFamilies": families} if families else {})},
        }
    )


def eps(
    name: str,
    endpoints: list[dict[str, Any]],
    ports: list[dict[str, Any]] | None = None,
    address_type: str = "IPv4",
) -> Any:
    return slice_view(
        {
            "metadata": {"name": name, "labels": {"kubernetes.io/service-name": "greeter"}},
            "addressType": address_type,
            "ports": ports
            if ports is not None
            else [{"name": "grpc", "port": 50051, "protocol": "TCP"}],
            "endpoints": endpoints,
        }
    )


def ep(addr: str, **conditions: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"addresses": [addr]}
    if conditions:
        out["conditions"] = conditions
    return out


GRPC = ServicePort("grpc", 8080)


def addrs(result: tuple[Endpoint, ...]) -> list[str]:
    return [e.hostport for e in result]


def test_every_slice_counts_and_duplicates_collapse() -> None:
    slices = [
        eps("a", [ep("10.0.0.2"), ep("10.0.0.1")]),
        eps("b", [ep("10.0.0.3")]),
        eps("c", [ep("10.0.0.1"), ep("10.0.0.10")]),
    ]
    result = build_endpoints(slices, GRPC)
    # Numeric order, not text order: .2 before .10.
    assert addrs(result) == [f"10.0.0.{n}:50051" for n in (1, 2, 3, 10)]


def test_output_is_deterministic_whatever_the_slice_order() -> None:
    a = eps("a", [ep("10.0.0.2", ready=False), ep("10.0.0.1")])
    b = eps("b", [ep("10.0.0.2"), ep("10.0.0.3")])
    assert build_endpoints([a, b], GRPC) == build_endpoints([b, a], GRPC)
    # The duplicate with the better conditions wins.
    (two,) = [e for e in build_endpoints([a, b], GRPC) if e.address == "10.0.0.2"]
    assert two.ready


def test_no_slices_or_empty_slices_give_no_endpoints() -> None:
    assert build_endpoints([], GRPC) == ()
    assert build_endpoints([eps("a", [])], GRPC) == ()
    empty = slice_view({"metadata": {"name": "x"}, "addressType": "IPv4", "endpoints": None})
    assert build_endpoints([empty], GRPC) == ()


def test_conditions_ready_absent_means_ready() -> None:
    slices = [
        eps(
            "a",
            [
                ep("10.0.0.1"),
                ep("10.0.0.2", ready=None),
                ep("10.0.0.3", ready=False),
                ep("10.0.0.4", ready=False, serving=True, terminating=True),
                ep("10.0.0.5", ready=True, serving=None),
            ],
        )
    ]
    by = {e.address: e for e in build_endpoints(slices, GRPC)}
    assert set(by) == {"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.5"}
    assert by["10.0.0.1"].ready
    assert by["10.0.0.1"].serving
    assert not by["10.0.0.1"].terminating
    assert by["10.0.0.2"].ready
    assert not by["10.0.0.3"].ready
    assert not by["10.0.0.3"].serving  # serving absent: as ready
    assert by["10.0.0.5"].serving

    with_term = {e.address: e for e in build_endpoints(slices, GRPC, include_terminating=True)}
    t = with_term["10.0.0.4"]
    assert (t.ready, t.serving, t.terminating) == (False, True, True)


def test_terminating_and_ready_is_never_ready() -> None:
    slices = [eps("a", [ep("10.0.0.1", ready=True, terminating=True)])]
    (e,) = build_endpoints(slices, GRPC, include_terminating=True)
    assert not e.ready
    assert e.terminating


def test_zone_node_pod_are_carried() -> None:
    body = ep("10.0.0.1")
    body.update(
        zone="z1", nodeName="n1", targetRef={"kind": "Pod", "name": "p1", "namespace": "ns"}
    )
    other = ep("10.0.0.2")
    other["targetRef"] = {"kind": "Node", "name": "not-a-pod"}
    by = {e.address: e for e in build_endpoints([eps("a", [body, other])], GRPC)}
    assert (by["10.0.0.1"].zone, by["10.0.0.1"].node, by["10.0.0.1"].pod) == ("z1", "n1", "p1")
    assert by["10.0.0.2"].pod is None


def test_only_the_first_address_counts() -> None:
    body = {"addresses": ["10.0.0.1", "10.0.0.99"]}
    assert addrs(build_endpoints([eps("a", [body])], GRPC)) == ["10.0.0.1:50051"]


def test_port_resolution_by_name_number_and_first() -> None:
    service = svc(
        [
            {"name": "http", "port": 80, "targetPort": 8000},
            {"name": "grpc", "port": 8080, "targetPort": "grpc"},
        ]
    )
    assert resolve_port(service, "") == ServicePort("http", 80)
    assert resolve_port(service, "grpc") == ServicePort("grpc", 8080)
    assert resolve_port(service, 8080) == ServicePort("grpc", 8080)
    with pytest.raises(PortError, match=r"no port 'nope' \(it has http:80, grpc:8080\)"):
        resolve_port(service, "nope")
    with pytest.raises(PortError, match="no port 9"):
        resolve_port(service, 9)
    with pytest.raises(PortError, match="has no ports"):
        resolve_port(svc([]), "")


def test_targetport_comes_from_each_slice_by_port_name() -> None:
    # A named targetPort can map to different numbers per pod: one slice each.
    ports_a = [{"name": "grpc", "port": 50051, "protocol": "TCP"}, {"name": "http", "port": 8000}]
    ports_b = [{"name": "grpc", "port": 50052, "protocol": "TCP"}]
    slices = [eps("a", [ep("10.0.0.1")], ports_a), eps("b", [ep("10.0.0.2")], ports_b)]
    assert addrs(build_endpoints(slices, GRPC)) == ["10.0.0.1:50051", "10.0.0.2:50052"]
    assert addrs(build_endpoints(slices, ServicePort("http", 80))) == ["10.0.0.1:8000"]
    # Protocol must match too.
    assert build_endpoints(slices, ServicePort("grpc", 8080, "UDP")) == ()


def test_unnamed_single_port() -> None:
    service = svc([{"port": 8080, "targetPort": 50051}])
    port = resolve_port(service, "")
    assert port == ServicePort("", 8080)
    slices = [eps("a", [ep("10.0.0.1")], [{"port": 50051, "protocol": "TCP"}])]
    assert addrs(build_endpoints(slices, port)) == ["10.0.0.1:50051"]


def test_address_family() -> None:
    v4 = eps("a", [ep("10.0.0.1")])
    v6 = eps("b", [ep("fd00::1")], address_type="IPv6")
    fqdn = eps("c", [ep("example.com")], address_type="FQDN")
    assert pick_family(None, [v4, v6]) == "IPv4"
    assert pick_family(None, [v6]) == "IPv6"
    assert pick_family(svc([], ["IPv6", "IPv4"]), [v6]) == "IPv4"
    assert pick_family(svc([], ["IPv6"]), [v4, v6]) == "IPv6"
    assert pick_family(svc([], ["IPv4"]), [v4], "IPv6") == "IPv6"
    assert pick_family(None, []) == "IPv4"
    assert addrs(build_endpoints([v4, v6, fqdn], GRPC, "IPv6")) == ["[fd00::1]:50051"]
    assert addrs(build_endpoints([v4, v6, fqdn], GRPC, "IPv4")) == ["10.0.0.1:50051"]


def test_views_are_compact_and_tolerate_missing_fields() -> None:
    assert service_view({}) == {
        "namespace": "",
        "name": "",
        "ports": [],
        "ipFamilies": [],
        "annotations": {},
    }
    assert slice_view({"endpoints": [{"addresses": []}]})["endpoints"] == []


endpoint_conditions = st.fixed_dictionaries(
    {},
    optional={
        "ready": st.none() | st.booleans(),
        "serving": st.none() | st.booleans(),
        "terminating": st.none() | st.booleans(),
    },
)
slice_endpoints = st.lists(
    st.builds(
        lambda n, c, zone: {**ep(f"10.0.0.{n}", **c), **({"zone": zone} if zone else {})},
        st.integers(1, 12),
        endpoint_conditions,
        st.sampled_from(["", "z1", "z2"]),
    ),
    max_size=8,
)


@given(
    changes=st.lists(st.lists(slice_endpoints, min_size=1, max_size=3), min_size=1, max_size=6),
    include_terminating=st.booleans(),
)
def test_a_cache_changes_nothing_but_reuses_unchanged_endpoints(
    changes: list[list[list[dict[str, Any]]]], include_terminating: bool
) -> None:
    port = ServicePort("grpc", 8080)
    cache = EndpointCache()
    previous: tuple[Endpoint, ...] = ()
    for version in changes:
        slices = [eps(f"s{i}", endpoints) for i, endpoints in enumerate(version)]
        fresh = build_endpoints(slices, port, "IPv4", include_terminating)
        cached = build_endpoints(slices, port, "IPv4", include_terminating, cache)
        assert cached == fresh
        for e in cached:  # an endpoint also in the previous result is that very object
            same = [p for p in previous if p == e]
            assert all(p is e for p in same)
        previous = cached
