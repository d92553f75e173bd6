"""Sync channels against real servers on 127.0.0.x and real snapshot files."""

from __future__ import annotations

import gc
import threading
import time
from collections import Counter
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

import kuberesolver
from kuberesolver.client.channel import registry
from testenv.wait import until
from tests.client import _support
from tests.client._support import (
    BIDI,
    CLIENT_STREAM,
    SERVER_STREAM,
    TARGET,
    UNARY,
    Backends,
    call_names,
    make_snapshot,
    publish,
)


def _open(root: Path, **kw: Any) -> grpc.Channel:
    return kuberesolver.insecure_channel(TARGET, snapshot_dir=root, **kw)


@pytest.fixture
def a(backends: Backends, snapdir: Path) -> _support.Backend:
    """Backend a on 127.0.0.2, the one endpoint of the published snapshot."""
    backend = backends("127.0.0.2", "a")
    publish(snapdir, make_snapshot([backend.endpoint()]))
    return backend


def names_called(root: Path, n: int, **kw: Any) -> Counter[str]:
    """The backends that answered ``n`` calls on a channel to TARGET opened with ``kw``."""
    with _open(root, **kw) as ch:
        return call_names(ch.unary_unary(UNARY), n, timeout=5)


def test_returns_a_real_grpc_channel_and_works_with_generated_stubs(
    a: _support.Backend, root: Path
) -> None:
    with _open(root) as ch:
        assert isinstance(ch, grpc.Channel)
        stub = health_pb2_grpc.HealthStub(ch)
        reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_four_call_shapes_metadata_and_compression(a: _support.Backend, root: Path) -> None:
    with _open(root, compression=grpc.Compression.Gzip) as ch:
        unary = ch.unary_unary(UNARY)
        reply, call = unary.with_call(
            b"xyz",
            timeout=5,
            metadata=(("x-echo", "hello"),),
            compression=grpc.Compression.Deflate,
        )
        assert reply == b"a|hello|3"
        assert ("x-echoed", "hello") in call.initial_metadata()
        assert list(ch.unary_stream(SERVER_STREAM)(b"4", timeout=5)) == [
            b"a|0",
            b"a|1",
            b"a|2",
            b"a|3",
        ]
        assert ch.stream_unary(CLIENT_STREAM)(iter([b"1", b"2", b"3"]), timeout=5) == b"a|3"
        assert list(ch.stream_stream(BIDI)(iter([b"x", b"y"]), timeout=5)) == [b"a|x", b"a|y"]
    assert a.authorities == {"greeter.ns": 4}


def test_deadline_exceeded(backends: Backends, root: Path, snapdir: Path) -> None:
    a = backends("127.0.0.2")
    a.delay_s = 1.0
    publish(snapdir, make_snapshot([a.endpoint()]))
    with _open(root) as ch, pytest.raises(grpc.RpcError) as info:
        ch.unary_unary(UNARY)(b"", timeout=0.1)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_intercept_channel(a: _support.Backend, root: Path) -> None:
    seen: list[str] = []

    class AddHeader(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
        def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
            seen.append(details.method)
            details = details._replace(metadata=(("x-echo", "intercepted"),))
            return continuation(details, request)

    with _open(root) as ch:
        intercepted = grpc.intercept_channel(ch, AddHeader())
        assert intercepted.unary_unary(UNARY)(b"", timeout=5) == b"a|intercepted|0"
    assert seen == [UNARY]


def test_close_is_idempotent_and_releases_the_watch(
    a: _support.Backend, root: Path, snapdir: Path
) -> None:
    ch = _open(root)
    assert snapdir in registry().watched()
    ch.unary_unary(UNARY)(b"", timeout=5)
    ch.close()
    ch.close()
    assert registry().watched() == []
    with pytest.raises(ValueError, match="closed"):
        ch.unary_unary(UNARY)(b"", timeout=5)


def test_channels_share_one_watch(a: _support.Backend, root: Path, snapdir: Path) -> None:
    with _open(root) as one, _open(root) as two:
        assert registry().watched() == [snapdir]
        assert one.unary_unary(UNARY)(b"", timeout=5)
        assert two.unary_unary(UNARY)(b"", timeout=5)
        one.close()
        assert registry().watched() == [snapdir]
        assert two.unary_unary(UNARY)(b"", timeout=5)


def test_lifecycle_threads_and_xds_server_stop(a: _support.Backend, root: Path) -> None:
    with _open(root) as ch:
        ch.unary_unary(UNARY)(b"", timeout=5)
        ads = registry().ads
        assert ads is not None
        assert ads.running
        assert any(t.name.startswith("kuberesolver-watch") for t in threading.enumerate())
    # once grpc's xDS clients hung up: when no grpc channel object on an xDS
    # target is left (some die only in a garbage collection)
    until(lambda: gc.collect() >= 0 and not ads.running, timeout_s=10)
    assert ads.stream_count == 0
    until(
        lambda: not any(t.name.startswith("kuberesolver-watch") for t in threading.enumerate()),
        timeout_s=10,
    )
    # and it all starts again for the next channel
    with _open(root) as ch:
        assert ch.unary_unary(UNARY)(b"", timeout=10)


def test_update_keeps_connections_of_unchanged_endpoints(
    backends: Backends, root: Path, snapdir: Path
) -> None:
    bs = [backends(f"127.0.0.{i}", f"b{i}") for i in (2, 3, 4, 5)]
    publish(snapdir, make_snapshot([b.endpoint() for b in bs[:3]]))
    with _open(root) as ch:
        call = ch.unary_unary(UNARY)
        assert set(call_names(call, 9, timeout=5)) == {"b2", "b3", "b4"}
        revision = 1
        for members in ([0, 1, 2, 3], [1, 2, 3], [0, 1, 2, 3], [0, 2, 3]):
            revision += 1
            publish(snapdir, make_snapshot([bs[i].endpoint() for i in members], revision=revision))
            want = {f"b{i + 2}" for i in members}
            until(lambda want=want: set(call_names(call, 8, timeout=5)) == want, timeout_s=10)
    # b3, b4 and b5 never left: each served all its calls over one connection
    assert [b.connections for b in bs[1:]] == [1, 1, 1], [dict(b.peers) for b in bs]


def test_new_plain_channel_reconnects_everything(backends: Backends) -> None:
    """The measured fact that motivates the design: overlapping targets share nothing."""
    a, b = backends("127.0.0.2"), backends("127.0.0.3")
    config = '{"loadBalancingConfig": [{"round_robin": {}}]}'
    for target in (f"ipv4:127.0.0.2:{a.port}", f"ipv4:127.0.0.2:{a.port},127.0.0.3:{b.port}"):
        with grpc.insecure_channel(target, options=[("grpc.service_config", config)]) as ch:
            call_names(ch.unary_unary(UNARY), 4, timeout=5)
    assert a.connections == 2


def test_removed_endpoint_finishes_in_flight_calls(
    backends: Backends, root: Path, snapdir: Path
) -> None:
    a, b = backends("127.0.0.2", "a"), backends("127.0.0.3", "b")
    publish(snapdir, make_snapshot([a.endpoint()]))
    with _open(root) as ch, futures.ThreadPoolExecutor(1) as pool:
        call = ch.unary_unary(UNARY)
        held = pool.submit(call, b"", timeout=30, metadata=(("hold", "1"),))
        assert a.started.wait(10)
        publish(snapdir, make_snapshot([b.endpoint()], revision=2))
        until(lambda: call(b"", timeout=5).startswith(b"b|"), timeout_s=10)
        assert not held.done()
        a.release.set()
        assert held.result(10) == b"a||0"
        assert call_names(call, 5, timeout=5) == {"b": 5}


def test_no_endpoints_fails_fast_with_a_clear_message(root: Path, snapdir: Path) -> None:
    publish(snapdir, make_snapshot([]))
    with _open(root) as ch:
        with pytest.raises(grpc.RpcError) as info:
            ch.unary_unary(UNARY)(b"", timeout=30)
        # UNAVAILABLE, not DEADLINE_EXCEEDED: it failed at once instead of waiting
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "greeter.ns" in info.value.details()
        assert "no endpoints" in info.value.details()


def test_not_ready_and_terminating_endpoints_get_no_traffic(
    backends: Backends, root: Path, snapdir: Path
) -> None:
    a, b, c = (backends(f"127.0.0.{i}", f"b{i}") for i in (2, 3, 4))
    endpoints = [a.endpoint(), b.endpoint(ready=False), c.endpoint(ready=False, terminating=True)]
    publish(snapdir, make_snapshot(endpoints))
    assert names_called(root, 10) == {"b2": 10}


def test_wait_for_ready_waits_for_endpoints(backends: Backends, root: Path, snapdir: Path) -> None:
    a = backends("127.0.0.2", "a")
    publish(snapdir, make_snapshot([]))
    with _open(root) as ch, futures.ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(ch.unary_unary(UNARY), b"", timeout=30, wait_for_ready=True)
        time.sleep(0.3)
        assert not waiting.done()
        publish(snapdir, make_snapshot([a.endpoint()], revision=2))
        assert waiting.result(20) == b"a||0"


def test_endpoint_whose_connection_fails_is_skipped(
    backends: Backends, root: Path, snapdir: Path
) -> None:
    a = backends("127.0.0.2", "a")
    dead = backends("127.0.0.3", "dead")
    dead_endpoint = dead.endpoint()
    dead.stop()
    publish(snapdir, make_snapshot([a.endpoint(), dead_endpoint]))
    assert names_called(root, 20) == {"a": 20}


def test_unavailable_is_retried_on_another_endpoint(
    backends: Backends, root: Path, snapdir: Path
) -> None:
    good, bad = backends("127.0.0.2", "good"), backends("127.0.0.3", "bad")
    bad.fail_with = grpc.StatusCode.UNAVAILABLE
    publish(snapdir, make_snapshot([good.endpoint(), bad.endpoint()]))
    assert names_called(root, 20) == {"good": 20}
    assert bad.calls > 0


def test_retries_are_bounded(backends: Backends, root: Path, snapdir: Path) -> None:
    bad = backends("127.0.0.2", "bad")
    bad.fail_with = grpc.StatusCode.UNAVAILABLE
    publish(snapdir, make_snapshot([bad.endpoint()]))
    with _open(root, max_attempts=2) as ch:
        with pytest.raises(grpc.RpcError) as info:
            ch.unary_unary(UNARY)(b"", timeout=5)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert bad.calls == 2


def test_own_zone_is_preferred_when_it_has_ready_endpoints(
    backends: Backends, root: Path, snapdir: Path
) -> None:
    a, b = backends("127.0.0.2", "zone-a"), backends("127.0.0.3", "zone-b")
    publish(snapdir, make_snapshot([a.endpoint(zone="a"), b.endpoint(zone="b")]))
    with _open(root, zone="b") as ch:
        call = ch.unary_unary(UNARY)
        assert call_names(call, 10, timeout=5) == {"zone-b": 10}
        publish(
            snapdir,
            make_snapshot([a.endpoint(zone="a"), b.endpoint(zone="b", ready=False)], revision=2),
        )
        until(lambda: call(b"", timeout=5).startswith(b"zone-a"), timeout_s=10)
        assert call_names(call, 10, timeout=5) == {"zone-a": 10}
    with _open(root) as ch:  # without a zone: no preference
        publish(snapdir, make_snapshot([a.endpoint(zone="a"), b.endpoint(zone="b")], revision=3))
        until(lambda: len(call_names(ch.unary_unary(UNARY), 10, timeout=5)) == 2, timeout_s=10)


def test_zone_from_environment(
    backends: Backends, root: Path, snapdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = backends("127.0.0.2", "zone-a"), backends("127.0.0.3", "zone-b")
    publish(snapdir, make_snapshot([a.endpoint(zone="a"), b.endpoint(zone="b")]))
    monkeypatch.setenv("KUBERESOLVER_ZONE", "a")
    assert names_called(root, 10) == {"zone-a": 10}


def test_pick_first_from_the_snapshot_service_config(
    backends: Backends, root: Path, snapdir: Path
) -> None:
    a, b = backends("127.0.0.2", "a"), backends("127.0.0.3", "b")
    config = {"loadBalancingConfig": [{"pick_first": {}}]}
    publish(snapdir, make_snapshot([a.endpoint(), b.endpoint()], service_config=config))
    assert len(names_called(root, 10)) == 1
    assert len(names_called(root, 10, lb_policy="round_robin")) == 2  # the argument wins


def test_weighted_round_robin_follows_orca_load_reports(
    backends: Backends, root: Path, snapdir: Path
) -> None:
    busy, idle = backends("127.0.0.2", "busy"), backends("127.0.0.3", "idle")
    busy.orca_cpu, idle.orca_cpu = 0.9, 0.1
    publish(snapdir, make_snapshot([busy.endpoint(), idle.endpoint()]))
    with _open(root, lb_policy="weighted_round_robin") as ch:
        call = ch.unary_unary(UNARY)

        def skewed() -> bool:
            counts = call_names(call, 100, timeout=5)
            return counts["idle"] > 3 * counts["busy"]

        until(skewed, timeout_s=30, interval_s=0.1)


def test_server_name_overrides_the_authority(a: _support.Backend, root: Path) -> None:
    with _open(root, server_name="greeter.example") as ch:
        ch.unary_unary(UNARY)(b"", timeout=5)
    assert a.authorities == {"greeter.example": 1}


def test_authority_is_a_deprecated_alias_of_server_name(a: _support.Backend, root: Path) -> None:
    with (
        pytest.warns(DeprecationWarning, match="server_name"),
        _open(root, authority="old.example") as ch,
    ):
        ch.unary_unary(UNARY)(b"", timeout=5)
    assert a.authorities == {"old.example": 1}


def test_bad_snapshot_keeps_last_good_endpoints(
    backends: Backends, root: Path, snapdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from kuberesolver.core.atomic_writer import write_atomic

    a = backends("127.0.0.2", "a")
    publish(snapdir, make_snapshot([a.endpoint()]))
    with _open(root) as ch:
        call = ch.unary_unary(UNARY)
        assert call(b"", timeout=5).startswith(b"a|")
        write_atomic(snapdir, {"endpoints.json": b'{"version": 1, "endpo'})
        until(lambda: "corrupt JSON" in caplog.text, timeout_s=10)
        assert call_names(call, 5, timeout=5) == {"a": 5}
        assert ch.snapshot.revision == 1


def test_unapplied_service_config_is_logged(
    backends: Backends, root: Path, snapdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    a = backends("127.0.0.2", "a")
    method_config = [{"name": [{"service": "demo.Greeter"}], "timeout": "1s", "waitForReady": True}]
    publish(
        snapdir,
        make_snapshot(
            [a.endpoint()],
            service_config={
                "loadBalancingConfig": [{"round_robin": {}}],
                "methodConfig": method_config,
            },
        ),
    )
    with _open(root) as ch:
        assert ch.unary_unary(UNARY)(b"", timeout=5).startswith(b"a|")
        # Said once, not again for every update with the same keys.
        b = backends("127.0.0.3", "b")
        sc = {"methodConfig": method_config}
        publish(snapdir, make_snapshot([a.endpoint(), b.endpoint()], revision=2, service_config=sc))
        until(lambda: ch.snapshot.revision == 2, timeout_s=10)
    # the timeout is applied (as each call's deadline), waitForReady is not
    said = "not applied by this client: methodConfig[0].waitForReady ("
    assert caplog.text.count(said) == 1
    assert "loadBalancingConfig" not in caplog.text


def _established_to(backend: _support._support.Backend) -> int:
    """Open connections to ``backend``, by address AND port.

    In a whole-suite run this process shares its network namespace with the
    control plane, whose apiserver may listen on the same port number at
    another loopback address.
    """
    import ipaddress

    import psutil

    def unmapped(ip: str) -> str:  # grpc's dual-stack sockets show ::ffff:127.0.0.3
        address = ipaddress.ip_address(ip)
        mapped = getattr(address, "ipv4_mapped", None)
        return str(mapped or address)

    return sum(
        1
        for c in psutil.net_connections(kind="tcp")
        if c.status == psutil.CONN_ESTABLISHED
        and c.raddr
        and c.raddr.port == backend.port
        and unmapped(c.raddr.ip) == backend.host
    )


def test_removed_endpoint_connection_closes_after_its_calls(
    backends: Backends, root: Path, snapdir: Path
) -> None:
    a, b = backends("127.0.0.2", "a"), backends("127.0.0.3", "b")
    publish(snapdir, make_snapshot([a.endpoint(), b.endpoint()]))
    with _open(root) as ch:
        call = ch.unary_unary(UNARY)
        assert set(call_names(call, 4, timeout=5)) == {"a", "b"}
        assert _established_to(a) == 1
        publish(snapdir, make_snapshot([b.endpoint()], revision=2))
        until(lambda: _established_to(a) == 0, timeout_s=10)
        assert call_names(call, 4, timeout=5) == {"b": 4}
        assert _established_to(b) == 1


def test_custom_scheme_end_to_end(a: _support.Backend, root: Path) -> None:
    kuberesolver.register_scheme("k8s-e2e")
    with kuberesolver.insecure_channel("k8s-e2e://ns/greeter:grpc", snapshot_dir=root) as ch:
        assert ch.unary_unary(UNARY)(b"", timeout=5) == b"a||0"


def test_existing_xds_bootstrap_is_merged(
    backends: Backends, root: Path, snapdir: Path, tmp_path: Path
) -> None:
    """In a fresh process whose xDS bootstrap points elsewhere, our channels still work."""
    import json
    import os
    import subprocess
    import sys

    a = backends("127.0.0.2", "a")
    publish(snapdir, make_snapshot([a.endpoint()]))
    theirs = tmp_path / "bootstrap.json"
    theirs.write_text(
        json.dumps(
            {
                "xds_servers": [
                    {"server_uri": "127.0.0.1:1", "channel_creds": [{"type": "insecure"}]}
                ],
                "node": {"id": "the-app"},
            }
        )
    )
    code = f"""
import json, os, grpc, kuberesolver
target = "kubernetes:///greeter.ns:grpc"
with kuberesolver.insecure_channel(target, snapshot_dir={str(root)!r}) as ch:
    print(ch.unary_unary({UNARY!r})(b"", timeout=10).decode())
boot = json.loads(os.environ["GRPC_XDS_BOOTSTRAP_CONFIG"])
print(boot["node"]["id"], sorted(boot["authorities"]), boot["xds_servers"][0]["server_uri"])
"""
    env = {**os.environ, "GRPC_XDS_BOOTSTRAP": str(theirs)}
    env.pop("GRPC_XDS_BOOTSTRAP_CONFIG", None)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.split("\n")
    assert lines[0] == "a||0"
    assert lines[1] == "the-app ['kuberesolver'] 127.0.0.1:1"


def test_policy_change_in_the_snapshot_applies_to_open_channels(
    backends: Backends, root: Path, snapdir: Path
) -> None:
    a, b = backends("127.0.0.2", "a"), backends("127.0.0.3", "b")
    endpoints = [a.endpoint(), b.endpoint()]
    publish(snapdir, make_snapshot(endpoints))
    with _open(root) as ch:
        call = ch.unary_unary(UNARY)
        assert len(call_names(call, 10, timeout=5)) == 2
        pick_first = {"loadBalancingConfig": [{"pick_first": {}}]}
        publish(snapdir, make_snapshot(endpoints, revision=2, service_config=pick_first))
        until(lambda: len(call_names(call, 10, timeout=5)) == 1, timeout_s=10)


def test_a_channel_collected_without_close_releases_its_watch(
    a: _support.Backend, root: Path
) -> None:
    ch = _open(root)
    ch.unary_unary(UNARY)(b"", timeout=5)
    del ch  # never closed
    gc.collect()
    until(lambda: registry().watched() == [], timeout_s=10)


def test_many_distinct_targets_at_once(backends: Backends, root: Path) -> None:
    """grpc keeps one xDS client (one ADS stream) per target: many must be served at once."""
    a = backends("127.0.0.2", "a")
    channels = []
    try:
        for i in range(12):
            publish(root / f"svc{i}.ns", make_snapshot([a.endpoint()], service=f"svc{i}"))
            channels.append(
                kuberesolver.insecure_channel(f"kubernetes:///svc{i}.ns:grpc", snapshot_dir=root)
            )
        for ch in channels:
            assert ch.unary_unary(UNARY)(b"", timeout=10) == b"a||0"
    finally:
        for ch in channels:
            ch.close()


def test_ipv6_endpoints(backends: Backends, root: Path, snapdir: Path) -> None:
    from kuberesolver.core.snapshot import Endpoint

    # ::1 on lo: a host with IPv6 has it, and so does the suite's own network namespace.
    b = backends("[::1]", "v6")
    publish(snapdir, make_snapshot([Endpoint("::1", b.port)]))
    with _open(root) as ch:
        assert ch.unary_unary(UNARY)(b"", timeout=5) == b"v6||0"
