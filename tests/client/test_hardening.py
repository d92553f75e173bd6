"""No input stops the watcher; what grpc would refuse is refused first; grpc's NACKs are reported.

Real files in kubelet's atomic layout, real grpc servers on 127.0.0.x, grpc's
own xDS client fed by the in-process ADS server.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from envoy.config.core.v3 import address_pb2, base_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from google.protobuf import wrappers_pb2  # type: ignore[import-untyped]

import kuberesolver
import kuberesolver.aio
from kuberesolver.client.channel import registry
from kuberesolver.client.sources.file import SnapshotWatcher
from kuberesolver.client.target import parse_target
from kuberesolver.core.atomic_writer import write_atomic
from kuberesolver.core.snapshot import ENDPOINTS_KEY, Endpoint, Snapshot, encode
from kuberesolver.xds.resources import ENDPOINT_TYPE, endpoints_name
from testenv.wait import until
from tests.client._support import (
    TARGET,
    UNARY,
    Backend,
    Backends,
    call_names,
    make_snapshot,
    publish,
)

GOOD_DOC = encode(make_snapshot([Endpoint("127.0.0.2", 50051)], revision=1))

HOSTILE = {
    "deep nesting": GOOD_DOC.replace('"serviceConfig": {}', '"serviceConfig": ' + "[" * 100_000),
    "a huge number": GOOD_DOC.replace('"revision": 1', '"revision": 1' + "0" * 20_000),
    "a host name": GOOD_DOC.replace('"127.0.0.2"', '"greeter.example"'),
    "a zone index": GOOD_DOC.replace('"127.0.0.2"', '"fe80::1%lo"'),
    "not UTF-8": "\udcff",
}


def _value(name: str, **labels: str) -> float:
    prom = pytest.importorskip("prometheus_client")
    return prom.REGISTRY.get_sample_value(name, labels) or 0.0  # type: ignore[no-any-return]


@pytest.mark.parametrize("content", list(HOSTILE.values()), ids=list(HOSTILE))
def test_the_watcher_survives_any_file_and_applies_the_next_good_one(
    snapdir: Path, caplog: pytest.LogCaptureFixture, content: str
) -> None:
    caplog.set_level(logging.ERROR, logger="kuberesolver")
    publish(snapdir, make_snapshot([Endpoint("127.0.0.2", 50051)]))
    seen: list[Snapshot] = []
    watcher = SnapshotWatcher(
        snapdir, parse_target(TARGET), make_snapshot([Endpoint("127.0.0.2", 50051)]), seen.append
    )
    watcher.start()
    try:
        data = content.encode("utf-8", "surrogateescape")
        write_atomic(snapdir, {ENDPOINTS_KEY: data})
        until(lambda: watcher.rejected == 1, timeout_s=10, message="the bad file refused")
        assert watcher.snapshot.revision == 1
        publish(snapdir, make_snapshot([Endpoint("127.0.0.3", 50051)], revision=2))
        until(lambda: [s.revision for s in seen] == [2], timeout_s=10, message="revision 2")
        assert watcher.alive
        assert watcher.snapshot.endpoints == (Endpoint("127.0.0.3", 50051),)
    finally:
        watcher.stop()


def test_an_error_in_a_callback_is_logged_once_with_its_traceback_and_watching_goes_on(
    snapdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="kuberesolver")
    publish(snapdir, make_snapshot([Endpoint("127.0.0.2", 50051)]))
    seen: list[int] = []

    def broken_counter(problem: str) -> None:
        raise RuntimeError("the metrics backend is down")

    watcher = SnapshotWatcher(
        snapdir,
        parse_target(TARGET),
        make_snapshot([Endpoint("127.0.0.2", 50051)]),
        lambda s: seen.append(s.revision),
        on_reject=broken_counter,
    )
    watcher.start()
    try:
        write_atomic(snapdir, {ENDPOINTS_KEY: b"garbage"})
        until(lambda: "the metrics backend is down" in caplog.text, timeout_s=10)
        assert "Traceback" in caplog.text
        publish(snapdir, make_snapshot([Endpoint("127.0.0.3", 50051)], revision=2))
        until(lambda: seen == [2], timeout_s=10, message="revision 2 applied")
        assert watcher.alive
        assert caplog.text.count("counting a rejected snapshot failed") == 1
    finally:
        watcher.stop()


def _duplicated(name: str, address: str, port: int) -> endpoint_pb2.ClusterLoadAssignment:
    """A ClusterLoadAssignment that grpc refuses: the same address twice."""
    endpoint = endpoint_components_pb2.LbEndpoint(
        endpoint=endpoint_components_pb2.Endpoint(
            address=address_pb2.Address(
                socket_address=address_pb2.SocketAddress(address=address, port_value=port)
            )
        )
    )
    return endpoint_pb2.ClusterLoadAssignment(
        cluster_name=name,
        endpoints=[
            endpoint_components_pb2.LocalityLbEndpoints(
                locality=base_pb2.Locality(region="kuberesolver", zone="all"),
                load_balancing_weight=wrappers_pb2.UInt32Value(value=1),
                lb_endpoints=[endpoint, endpoint],
            )
        ],
    )


@contextmanager
def _channel_on_a(
    backends: Backends, root: Path, snapdir: Path, caplog: pytest.LogCaptureFixture
) -> Iterator[tuple[kuberesolver.Channel, Any, Backend, Backend]]:
    """INFO logs captured, backends a and b, and a channel (and its call) on revision 1: a."""
    caplog.set_level(logging.INFO, logger="kuberesolver")
    a, b = backends("127.0.0.2", "a"), backends("127.0.0.3", "b")
    publish(snapdir, make_snapshot([a.endpoint()], revision=1))
    prom = pytest.importorskip("prometheus_client")
    with kuberesolver.insecure_channel(TARGET, snapshot_dir=root, registry=prom.REGISTRY) as ch:
        yield ch, ch.unary_unary(UNARY), a, b


def test_a_nack_is_an_error_and_a_metric_and_the_last_accepted_state_stays(
    backends: Backends, root: Path, snapdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with _channel_on_a(backends, root, snapdir, caplog) as (ch, call, _, b):
        assert call_names(call, 3, timeout=5) == {"a": 3}
        label = ch.lease.label
        refused = "refused_by_grpc"
        refused_before = _value("kuberesolver_updates_total", target=label, result=refused)
        ads = registry().ads
        assert ads is not None
        name = endpoints_name(ch.lease.spec.name)
        ads.publish({ENDPOINT_TYPE: {name: _duplicated(name, b.host, b.port)}})
        until(lambda: "refused" in caplog.text, timeout_s=10, message="the NACK reported")
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert any("grpc's xDS client refused" in r.getMessage() for r in errors)
        assert any("keeping revision 1" in r.getMessage() for r in errors)
        assert (
            _value("kuberesolver_updates_total", target=label, result=refused) == refused_before + 1
        )
        assert ch.snapshot.revision == 1
        assert call_names(call, 5, timeout=5) == {"a": 5}
        assert ch.lease.accepted_revision == 1
        # the next good snapshot is applied as usual
        publish(snapdir, make_snapshot([b.endpoint()], revision=2))
        until(lambda: call_names(call, 3, timeout=5) == {"b": 3}, timeout_s=10)
        until(lambda: "revision 2 applied" in caplog.text, timeout_s=10)


def test_applied_is_logged_once_grpc_accepted_it(
    backends: Backends, root: Path, snapdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with _channel_on_a(backends, root, snapdir, caplog) as (_, call, a, b):
        call_names(call, 1, timeout=5)
        publish(snapdir, make_snapshot([a.endpoint(), b.endpoint()], revision=2))
        until(lambda: "revision 2 applied, 2 ready of 2 endpoints" in caplog.text, timeout_s=10)
        assert caplog.text.count("revision 2 applied") == 1


def test_one_address_spelt_two_ways_is_served_once(
    backends: Backends, root: Path, snapdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="kuberesolver")
    a = backends("[::1]", "a")  # the suite's own network namespace always has ::1
    spellings = [Endpoint("::1", a.port, pod="a"), Endpoint("0:0:0:0:0:0:0:1", a.port, pod="a2")]
    publish(snapdir, make_snapshot(spellings))
    with kuberesolver.insecure_channel(TARGET, snapshot_dir=root) as ch:
        assert call_names(ch.unary_unary(UNARY), 3, timeout=5) == {"a": 3}
    assert "refused" not in caplog.text


def test_watch_settings_are_per_directory_and_a_second_value_warns_once(
    root: Path, snapdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="kuberesolver")
    publish(snapdir, make_snapshot([Endpoint("127.0.0.2", 50051)]))
    first = kuberesolver.insecure_channel(TARGET, snapshot_dir=root, debounce_ms=20)
    try:
        with kuberesolver.insecure_channel(TARGET, snapshot_dir=root, debounce_ms=20):
            pass
        assert "debounce_ms" not in caplog.text
        with kuberesolver.insecure_channel(TARGET, snapshot_dir=root, debounce_ms=80):
            pass
        assert caplog.text.count("debounce_ms=80, poll_interval_ms=5000 asked for") == 1
        assert "runs with debounce_ms=20" in caplog.text
        with kuberesolver.insecure_channel(TARGET, snapshot_dir=root, poll_interval_ms=100):
            pass
        assert caplog.text.count("asked for") == 1
    finally:
        first.close()


def test_closing_an_aio_channel_logs_nothing_from_grpc(
    backends: Backends, root: Path, snapdir: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    a = backends("127.0.0.2", "a")
    publish(snapdir, make_snapshot([a.endpoint()]))

    async def main() -> None:
        async with kuberesolver.aio.insecure_channel(TARGET, snapshot_dir=root) as ch:
            await ch.unary_unary(UNARY)(b"", timeout=5)

    asyncio.run(main())
    ads = registry().ads
    until(lambda: ads is None or ads.stream_count == 0, timeout_s=10, message="grpc hung up")
    err = capfd.readouterr().err
    assert "does not exist" not in err, err


def test_constructors_refuse_unknown_keywords(root: Path) -> None:
    kwargs: dict[str, Any] = {"snapshot_dir": root, "debounce": 5}
    with pytest.raises(TypeError, match="debounce"):
        kuberesolver.insecure_channel(TARGET, **kwargs)


def test_memory_is_given_back_after_a_large_snapshot_shrinks(root: Path, snapdir: Path) -> None:
    from kuberesolver.client import memory as _memory

    few = [Endpoint("127.0.0.2", 50051)]
    many = [
        Endpoint(f"127.1.{i // 256}.{i % 256}", 50051, ready=False)
        for i in range(_memory.SHRINK_THRESHOLD)
    ]
    publish(snapdir, make_snapshot(few, revision=1))
    with kuberesolver.insecure_channel(TARGET, snapshot_dir=root) as ch:
        ch.subscribe(lambda _state: None, try_to_connect=True)  # grpc subscribes to xDS
        until(lambda: ch.lease.accepted_revision == 1, timeout_s=30)
        publish(snapdir, make_snapshot(few + many, revision=2))
        until(lambda: ch.lease.accepted_revision == 2, timeout_s=120)
        before = _memory.given_back
        publish(snapdir, make_snapshot(few + many[:10], revision=3))  # not quite enough
        until(lambda: ch.lease.accepted_revision == 3, timeout_s=30)
        publish(snapdir, make_snapshot(few, revision=4))
        until(lambda: ch.lease.accepted_revision == 4, timeout_s=30)
        until(lambda: _memory.given_back > before, timeout_s=30, message="given back")
