"""Plain ``grpc.insecure_channel("xds://<authority>/<name>.<namespace>")`` clients, each in its
own process with a bootstrap from ``python -m kuberesolver bootstrap``, reach real backends on
127.0.0.x through the operator-side ADS server, and follow the store."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kuberesolver.core.snapshot import Endpoint, Snapshot
from kuberesolver.xds.ads_aio import StreamInfo
from kuberesolver.xds.resources import CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE
from kuberesolver.xds.store import XdsStore
from testenv.wait import until
from tests.client._support import Backend, make_snapshot
from tests.xds.conftest import (
    AUTHORITY,
    Client,
    Rig,
    ServerThread,
    acked_all,
    only,
    write_bootstrap,
)

GREETER = ("ns", "greeter")
OTHER = ("ns", "other")
TARGET = f"xds://{AUTHORITY}/greeter.ns"
OTHER_TARGET = f"xds://{AUTHORITY}/other.ns"
RETRY = {
    "methodConfig": [
        {
            "name": [{}],
            "retryPolicy": {
                "maxAttempts": 2,
                "initialBackoff": "0.01s",
                "maxBackoff": "0.1s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ]
}


def settled(xds: ServerThread, listener: str) -> StreamInfo | None:
    """The stream subscribed to ``listener`` once it has every type and has acked every response."""
    info = xds.stream_for(listener)
    return info if info is not None and acked_all(info) else None


def routed(xds: ServerThread, listener: str) -> StreamInfo | None:
    """The settled stream of ``listener`` once it got a second Listener."""
    info = settled(xds, listener)
    return info if info is not None and info.responses["Listener"] == 2 else None


def nacked(xds: ServerThread, listener: str) -> StreamInfo | None:
    """The stream subscribed to ``listener`` once it has refused a response."""
    info = xds.stream_for(listener)
    return info if info is not None and info.nacks else None


def test_a_plain_channel_follows_the_store(rig: Rig) -> None:
    store, _, clients, backends = rig
    b1, b2, b3 = (backends(f"127.0.0.{i}", f"b{i - 1}") for i in (2, 3, 4))
    store.put(GREETER, make_snapshot([b1.endpoint()]))
    client = clients(TARGET)
    assert client.calls(20) == {"counts": {"b1": 20}, "errors": []}

    store.put(GREETER, make_snapshot([b1.endpoint(), b2.endpoint()], revision=2))
    until(lambda: only(client, {"b1", "b2"}), timeout_s=10, message="b2 added")

    # b1 terminating: served as DRAINING, so new calls go to b2 only
    draining = make_snapshot([b1.endpoint(terminating=True), b2.endpoint()], revision=3)
    store.put(GREETER, draining)
    until(lambda: only(client, {"b2"}), timeout_s=10, message="b1 draining")

    # b1 gone, b3 in another zone: each zone is a locality, both get calls
    zoned = make_snapshot([b2.endpoint(zone="a"), b3.endpoint(zone="b")], revision=4)
    store.put(GREETER, zoned)
    until(lambda: only(client, {"b2", "b3"}), timeout_s=10, message="b3 added in zone b")
    calls = b1.calls
    assert only(client, {"b2", "b3"}, n=40)
    assert b1.calls == calls


def test_the_cluster_ip_is_the_last_resort(rig: Rig) -> None:
    store, _, clients, backends = rig
    pod = backends("127.0.0.2", "pod")
    proxy = backends("127.0.0.5", "kube-proxy")  # stands for the Service's ClusterIP
    not_ready = make_snapshot([pod.endpoint(ready=False)], port_number=proxy.port)
    store.put(GREETER, _with_cluster_ip(not_ready, proxy.host))
    client = clients(TARGET)
    until(lambda: only(client, {"kube-proxy"}), timeout_s=10, message="the ClusterIP serves")

    ready = make_snapshot([pod.endpoint()], revision=2, port_number=proxy.port)
    store.put(GREETER, _with_cluster_ip(ready, proxy.host))
    until(lambda: only(client, {"pod"}), timeout_s=10, message="back to the pod")


def _with_cluster_ip(snapshot: Snapshot, ip: str) -> Snapshot:
    return dataclasses.replace(snapshot, cluster_ips=(ip,))


def test_a_change_is_pushed_only_to_the_streams_that_subscribe_to_it(rig: Rig) -> None:
    store, xds, clients, backends = rig
    a1, a2, o1, o2 = (backends(f"127.0.0.{i}", n) for i, n in [(2, "a1"), (3, "a2"), (4, "o1"),
                                                               (5, "o2")])  # fmt: skip
    store.put(GREETER, make_snapshot([a1.endpoint()]))
    store.put(OTHER, make_snapshot([o1.endpoint()], service="other"))
    client = clients(TARGET, OTHER_TARGET)  # grpc opens one ADS stream per target
    assert only(client, {"a1"}, 0)
    assert only(client, {"o1"}, 1)
    a_listener, o_listener = store.listener(GREETER), store.listener(OTHER)
    a0 = until(lambda: settled(xds, a_listener), timeout_s=10)
    o0 = until(lambda: settled(xds, o_listener), timeout_s=10)
    assert a0.responses == o0.responses == {"Listener": 1, "Cluster": 1,
                                            "ClusterLoadAssignment": 1}  # fmt: skip

    # an endpoint of "other" changes: its stream gets one CLA, and nothing else
    store.put(OTHER, make_snapshot([o1.endpoint(), o2.endpoint()], revision=2, service="other"))
    until(lambda: only(client, {"o1", "o2"}, 1), timeout_s=10)
    o1_info = until(lambda: settled(xds, o_listener), timeout_s=10)
    assert o1_info.responses == {"Listener": 1, "Cluster": 1, "ClusterLoadAssignment": 2}

    # its route changes (a retry policy): one Listener, nothing else
    store.put(OTHER, make_snapshot([o1.endpoint(), o2.endpoint()], revision=2, service="other",
                                   service_config=RETRY))  # fmt: skip
    o2_info = until(lambda: routed(xds, o_listener), timeout_s=10)
    assert o2_info.responses == {"Listener": 2, "Cluster": 1, "ClusterLoadAssignment": 2}

    # then greeter changes; a stray push from the changes above would come before this one
    store.put(GREETER, make_snapshot([a1.endpoint(), a2.endpoint()], revision=2))
    until(lambda: only(client, {"a1", "a2"}, 0), timeout_s=10)
    a1_info = until(lambda: settled(xds, a_listener), timeout_s=10)
    assert a1_info.responses == {"Listener": 1, "Cluster": 1, "ClusterLoadAssignment": 2}
    assert xds.server.metrics.value("kuberesolver_xds_nacks_total", type="Listener") == 0


def test_a_refused_resource_keeps_the_last_good_version(rig: Rig) -> None:
    store, xds, clients, backends = rig
    b1, b2 = backends("127.0.0.2", "b1"), backends("127.0.0.3", "b2")
    store.put(GREETER, make_snapshot([b1.endpoint()]))
    client = clients(TARGET)
    assert only(client, {"b1"})
    listener = store.listener(GREETER)
    until(lambda: settled(xds, listener), timeout_s=10)
    metrics = xds.server.metrics

    # an address grpc cannot parse: grpc refuses the CLA and keeps the one it had
    bad = Endpoint("not-an-ip", 50051)
    store.put(GREETER, make_snapshot([b1.endpoint(), b2.endpoint(), bad], revision=2))
    info = until(lambda: nacked(xds, listener), timeout_s=10)
    assert info.acked["ClusterLoadAssignment"] == "1"
    assert metrics.value("kuberesolver_xds_nacks_total", type="ClusterLoadAssignment") == 1
    assert only(client, {"b1"}, n=40)  # the last good version: b2 gets nothing

    # the next good version goes through
    store.put(GREETER, make_snapshot([b1.endpoint(), b2.endpoint()], revision=3))
    until(lambda: only(client, {"b1", "b2"}), timeout_s=10, message="the good version after")
    after = until(lambda: settled(xds, listener), timeout_s=10)
    assert after.nacks == 1
    assert metrics.value("kuberesolver_xds_nacks_total", type="ClusterLoadAssignment") == 1
    for type_url in (LISTENER_TYPE, CLUSTER_TYPE, ENDPOINT_TYPE):
        assert metrics.value("kuberesolver_xds_acks_total", type=type_url.rsplit(".", 1)[-1]) >= 1


def test_a_target_put_later_reaches_a_waiting_client(rig: Rig) -> None:
    store, xds, clients, backends = rig
    b1 = backends("127.0.0.2", "b1")
    client = clients(TARGET)
    results: list[dict[str, Any]] = []
    waiting = threading.Thread(target=lambda: results.append(client.calls(1)))
    waiting.start()  # a call that waits for the target (wait_for_ready)
    listener = store.listener(GREETER)
    # the Listener does not exist yet: an empty full set tells grpc so, at once
    until(lambda: settled_listener(xds, listener), timeout_s=10)
    store.put(GREETER, make_snapshot([b1.endpoint()]))
    waiting.join(10)
    assert results == [{"counts": {"b1": 1}, "errors": []}]


def settled_listener(xds: ServerThread, listener: str) -> StreamInfo | None:
    """The stream of ``listener`` once it has acked a (possibly empty) Listener response."""
    info = xds.stream_for(listener)
    if info is None or info.acked.get("Listener") != "1":
        return None
    return info


def test_a_client_that_goes_away_leaves_no_stream(rig: Rig) -> None:
    store, xds, clients, backends = rig
    b1 = backends("127.0.0.2", "b1")
    store.put(GREETER, make_snapshot([b1.endpoint()]))
    client = clients(TARGET, TARGET)  # two channels, one target: one stream
    assert only(client, {"b1"}, 0)
    assert only(client, {"b1"}, 1)
    until(lambda: settled(xds, store.listener(GREETER)), timeout_s=10)
    assert len(xds.server.streams()) == 1
    assert xds.server.metrics.value("kuberesolver_xds_streams") == 1
    client.proc.kill()
    client.proc.wait()
    until(lambda: xds.server.streams() == [], timeout_s=10, message="the stream is dropped")
    assert xds.server.metrics.value("kuberesolver_xds_streams") == 0


def test_a_client_in_a_zone_prefers_it_and_fails_over(rig: Rig, tmp_path: Path) -> None:
    store, xds, clients, backends = rig
    ba, bb = backends("127.0.0.2", "a"), backends("127.0.0.3", "b")
    store.put(GREETER, make_snapshot([ba.endpoint(zone="a"), bb.endpoint(zone="b")]))
    in_b = Client(write_bootstrap(tmp_path / "zone-b.json", xds.uri, "--zone", "b"), [TARGET])
    try:
        anywhere = clients(TARGET)  # no zone in its bootstrap: every zone gets calls
        assert only(anywhere, {"a", "b"})
        assert only(in_b, {"b"}, n=40)
        zones = until(lambda: {s.zone for s in xds.server.streams()} == {"", "b"}, timeout_s=10)
        assert zones

        store.put(GREETER, make_snapshot([ba.endpoint(zone="a"), bb.endpoint(zone="b",
                                          ready=False)], revision=2))  # fmt: skip
        until(lambda: only(in_b, {"a"}), timeout_s=10, message="zone b fails over to a")
        store.put(GREETER, make_snapshot([ba.endpoint(zone="a"), bb.endpoint(zone="b")],
                                         revision=3))  # fmt: skip
        until(lambda: only(in_b, {"b"}), timeout_s=10, message="back to zone b")
    finally:
        in_b.close()


TIMEOUT_1S = {"methodConfig": [{"name": [{"service": "kr.test.Echo"}], "timeout": "1s"}]}


def test_grpcio_is_not_served_method_timeouts(rig: Rig) -> None:
    store, xds, clients, backends = rig
    b1 = backends("127.0.0.2", "b1")
    store.put(GREETER, make_snapshot([b1.endpoint()]), TIMEOUT_1S)
    client = clients(TARGET)
    assert only(client, {"b1"}, n=1)
    info = until(lambda: settled(xds, store.listener(GREETER)), timeout_s=10)
    assert info.user_agent.startswith("gRPC C-core")  # grpcio: "gRPC C-core linux Python"
    assert not info.timeouts
    b1.delay_s = 2.5  # past the 1 s timeout: grpc would end the call early (grpc/grpc#34547)
    assert client.calls(1) == {"counts": {"b1": 1}, "errors": []}


def test_with_timeouts_for_all_grpcio_ends_the_call_early(
    store: XdsStore, backends: Callable[..., Backend], tmp_path: Path
) -> None:
    b1 = backends("127.0.0.2", "b1")
    b1.delay_s = 2.5
    store.put(GREETER, make_snapshot([b1.endpoint()]), TIMEOUT_1S)
    xds = ServerThread(store, method_timeouts="all")
    try:
        client = Client(write_bootstrap(tmp_path / "all.json", xds.uri), [TARGET])
        try:
            started = time.monotonic()
            result = client.calls(1)
            elapsed = time.monotonic() - started
            info = until(lambda: settled(xds, store.listener(GREETER)), timeout_s=10)
        finally:
            client.close()
    finally:
        xds.stop()
    assert result["counts"] == {}
    assert result["errors"][0].startswith("DEADLINE_EXCEEDED"), result
    # the served 1 s timeout ended it: the backend answers at 2.5 s, the call's own is 5 s
    print(f"grpcio with timeouts served: DEADLINE_EXCEEDED after {elapsed:.3f} s (timeout 1 s)")
    assert info.timeouts
