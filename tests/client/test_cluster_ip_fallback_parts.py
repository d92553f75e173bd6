"""The ClusterIP fallback, pure parts: the optional snapshot field and the lowest-priority
locality the client serves (the operator's plan: tests/operator/test_operator_plan.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from envoy.config.core.v3 import health_check_pb2 as hc

from kuberesolver.client.settings import resolve
from kuberesolver.core.snapshot import Endpoint, Snapshot, SnapshotError, TargetRef, decode, encode
from kuberesolver.xds.channel_resources import ChannelSpec
from kuberesolver.xds.resources import CLUSTER_IP_LOCALITY, build_resources
from kuberesolver.xds.resources import build_endpoints as build_cla

SPEC = ChannelSpec("greeter", "ns", "grpc")
REF = TargetRef("greeter", "ns", "grpc", "grpc", 8080)


def _localities(cla: Any) -> list[tuple[int, str, list[tuple[str, int, int]]]]:
    return [
        (
            loc.priority,
            loc.locality.zone,
            [
                (
                    e.endpoint.address.socket_address.address,
                    e.endpoint.address.socket_address.port_value,
                    e.health_status,
                )
                for e in loc.lb_endpoints
            ],
        )
        for loc in cla.endpoints
    ]


# -- the contract ---------------------------------------------------------------------------


def test_cluster_ips_round_trip_and_are_absent_when_empty() -> None:
    snap = Snapshot(REF, 3, (Endpoint("10.244.0.1", 50051),), cluster_ips=("10.96.0.10",))
    text = encode(snap)
    assert json.loads(text)["clusterIPs"] == ["10.96.0.10"]
    assert decode(text) == snap
    headless = Snapshot(REF, 3, (Endpoint("10.244.0.1", 50051),))
    assert "clusterIPs" not in json.loads(encode(headless))
    assert decode(encode(headless)).cluster_ips == ()


@pytest.mark.parametrize(
    ("value", "problem"),
    [("10.96.0.10", "must be a list"), ([1], r"clusterIPs\[0\]"), (["x"], "an IP address")],
)
def test_bad_cluster_ips_are_refused_with_a_clear_message(value: object, problem: str) -> None:
    doc = json.loads(encode(Snapshot(REF, 1)))
    doc["clusterIPs"] = value
    with pytest.raises(SnapshotError, match=problem):
        decode(json.dumps(doc), "f.json")


# -- the client's xDS resources ------------------------------------------------------------------


def test_the_cluster_ip_is_the_lowest_priority_at_the_service_port() -> None:
    cla = build_cla(SPEC, [Endpoint("10.244.0.1", 50051)], 1, ["10.96.0.10"], 8080)
    assert _localities(cla) == [
        (0, "all", [("10.244.0.1", 50051, hc.HEALTHY)]),
        (1, CLUSTER_IP_LOCALITY, [("10.96.0.10", 8080, hc.HEALTHY)]),
    ]


def test_the_cluster_ip_comes_after_the_zone_priorities() -> None:
    spec = ChannelSpec("greeter", "ns", "grpc", zone="a")
    eps = [Endpoint("10.244.0.1", 50051, zone="a"), Endpoint("10.244.0.2", 50051, zone="b")]
    cla = build_cla(spec, eps, 1, ["10.96.0.10"], 8080)
    assert [(p, z) for p, z, _ in _localities(cla)] == [
        (0, "a"),
        (1, "other-zones"),
        (2, CLUSTER_IP_LOCALITY),
    ]


def test_with_no_ready_endpoint_the_reason_stays_first() -> None:
    cla = build_cla(SPEC, [], 4, ["10.96.0.10"], 8080)
    (p0, zone0, eps0), (p1, zone1, _) = _localities(cla)
    assert (p0, eps0, p1, zone1) == (0, [], 1, CLUSTER_IP_LOCALITY)
    assert "no endpoints for greeter.ns" in zone0


def test_no_fallback_when_switched_off_or_without_cluster_ip_or_port() -> None:
    off = ChannelSpec("greeter", "ns", "grpc", cluster_ip_fallback=False)
    assert off.name != SPEC.name
    ep = [Endpoint("10.244.0.1", 50051)]
    for cla in (
        build_cla(off, ep, 1, ["10.96.0.10"], 8080),
        build_cla(SPEC, ep, 1, [], 8080),
        build_cla(SPEC, ep, 1, ["10.96.0.10"], 0),
    ):
        assert [z for _, z, _ in _localities(cla)] == ["all"]


def test_build_resources_reads_the_snapshot() -> None:
    snap = Snapshot(REF, 2, (Endpoint("10.244.0.1", 50051),), cluster_ips=("10.96.0.10",))
    (cla,) = build_resources(SPEC, snap)[
        "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
    ].values()
    assert _localities(cla)[-1] == (1, CLUSTER_IP_LOCALITY, [("10.96.0.10", 8080, hc.HEALTHY)])


def test_settings_give_the_failover_and_keepalive_options(monkeypatch: Any) -> None:
    assert dict(resolve().channel_options()) == {
        "grpc.priority_failover_timeout_ms": 1000,
        "grpc.keepalive_time_ms": 4000,
        "grpc.keepalive_timeout_ms": 4000,
        "grpc.http2.ping_timeout_ms": 4000,
    }
    monkeypatch.setenv("KUBERESOLVER_KEEPALIVE_MS", "0")
    monkeypatch.setenv("KUBERESOLVER_CLUSTER_IP_FALLBACK", "off")
    settings = resolve(failover_timeout_ms=500)
    assert settings.cluster_ip_fallback is False
    assert settings.channel_options() == [("grpc.priority_failover_timeout_ms", 500)]
