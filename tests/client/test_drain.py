"""kuberesolver.server.DrainableServer: clients leave before the server stops (real grpc, loopback).

A plain ``stop(grace)`` under load cancels the calls grpc's core received but
had not handed to a handler, and those sent before the client read the
GOAWAY (bench/server_drain.py: 5-22 CANCELLED in 60 stops). A drain sends the
GOAWAY while the server still serves, so the stop finds nothing to cancel.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent import futures

import grpc
import pytest

from kuberesolver.server import DrainableServer
from kuberesolver.xds.serving import server_listener_name
from testenv.wait import until
from tests.client.test_tls import make_pki

METHOD = "/kr.test.Drain/Hello"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Counted:
    """Counts its calls; a call with request b"hold" waits for :attr:`release`."""

    def __init__(self) -> None:
        self.calls = 0
        self.holding = threading.Event()
        self.release = threading.Event()
        self._lock = threading.Lock()

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            "kr.test.Drain", {"Hello": grpc.unary_unary_rpc_method_handler(self._hello)}
        )

    def _hello(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        with self._lock:
            self.calls += 1
        if request == b"hold":
            self.holding.set()
            self.release.wait(10)
        return b"ok"


@pytest.fixture
def servers() -> Iterator[Callable[..., tuple[DrainableServer, Counted, int]]]:
    """Started drainable servers on 127.0.0.1 (stopped after the test)."""
    made: list[DrainableServer] = []

    def make() -> tuple[DrainableServer, Counted, int]:
        counted, port = Counted(), _free_port()
        server = DrainableServer(futures.ThreadPoolExecutor(4), handlers=[counted.handler()])
        server.add_insecure_port(f"127.0.0.1:{port}")
        server.start()
        made.append(server)
        return server, counted, port

    yield make
    for server in made:
        server.stop(None).wait()


def _round_robin(*ports: int) -> grpc.Channel:
    """A fixed address list: what a client with a stale endpoint list holds."""
    config = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})
    return grpc.insecure_channel(
        "ipv4:" + ",".join(f"127.0.0.1:{p}" for p in ports),
        options=[("grpc.service_config", config), ("grpc.use_local_subchannel_pool", 1)],
    )


def test_a_draining_server_sends_its_clients_elsewhere_while_it_still_runs(
    servers: Callable[..., tuple[DrainableServer, Counted, int]],
) -> None:
    leaving, left_calls, left_port = servers()
    _staying, stay_calls, stay_port = servers()
    with _round_robin(left_port, stay_port) as channel:
        call = channel.unary_unary(METHOD)
        until(
            lambda: (
                call(b"", timeout=5, wait_for_ready=True)
                and min(left_calls.calls, stay_calls.calls) > 0
            ),
            timeout_s=10,
            message="both servers to get calls",
        )
        assert leaving.drain(timeout_s=10), "connections left after the drain"
        before = left_calls.calls
        for _ in range(50):  # the server still runs, the client's list still names it
            assert call(b"", timeout=5) == b"ok"
        assert left_calls.calls == before, "calls went to the draining server"


def test_a_draining_server_refuses_new_connections(
    servers: Callable[..., tuple[DrainableServer, Counted, int]],
) -> None:
    server, counted, port = servers()
    with _round_robin(port) as channel:
        assert channel.unary_unary(METHOD)(b"", timeout=5, wait_for_ready=True) == b"ok"
    assert server.drain(timeout_s=10)
    with _round_robin(port) as fresh, pytest.raises(grpc.RpcError) as failed:
        fresh.unary_unary(METHOD)(b"", timeout=5)
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    assert counted.calls == 1


@pytest.mark.parametrize("host", ["0.0.0.0", "[::]"])
def test_a_server_on_a_wildcard_address_drains_its_connections(host: str) -> None:
    """The usual pod form: grpc's listener reports the wildcard address, found by channelz."""
    counted, port = Counted(), _free_port()
    server = DrainableServer(futures.ThreadPoolExecutor(2), handlers=[counted.handler()])
    server.add_insecure_port(f"{host}:{port}")
    server.start()
    try:
        with _round_robin(port) as channel:
            held = channel.unary_unary(METHOD).future(b"hold", timeout=10)
            assert counted.holding.wait(5)
            assert not server.drain(timeout_s=0.5), "the held call's connection is open"
            counted.release.set()
            assert held.result() == b"ok"
            assert server.drain(timeout_s=10)
    finally:
        server.stop(None).wait()


def test_a_call_in_flight_finishes_during_the_drain_and_the_stop(
    servers: Callable[..., tuple[DrainableServer, Counted, int]],
) -> None:
    server, counted, port = servers()
    with _round_robin(port) as channel:
        held = channel.unary_unary(METHOD).future(b"hold", timeout=10, wait_for_ready=True)
        assert counted.holding.wait(5)
        assert not server.drain(timeout_s=0.5), "its connection carries the held call"
        stopped = server.stop(5)
        counted.release.set()
        assert held.result() == b"ok"
        assert stopped.wait(5)


def test_stopping_under_load_after_a_drain_cancels_nothing(
    servers: Callable[..., tuple[DrainableServer, Counted, int]],
) -> None:
    """20 stops under 800 calls/s; a plain stop(5) cancels 0.1-0.4 calls per stop."""
    _staying, _, stay_port = servers()
    failures: dict[str, int] = {}
    current: list[Callable[..., bytes]] = []
    done = threading.Event()

    def load() -> None:
        while not done.is_set():
            try:
                current[-1](b"", timeout=1)
            except grpc.RpcError as exc:
                code = exc.code().name  # type: ignore[attr-defined]
                failures[code] = failures.get(code, 0) + 1
            done.wait(0.01)

    channels: list[grpc.Channel] = []
    threads = [threading.Thread(target=load, daemon=True) for _ in range(8)]
    try:
        for i in range(20):
            server, counted, port = servers()
            channel = _round_robin(port, stay_port)
            channels.append(channel)
            call = channel.unary_unary(METHOD)
            until(
                lambda: call(b"", timeout=5, wait_for_ready=True) and counted.calls > 0,  # noqa: B023
                timeout_s=10,
                message="the new server to get calls",
            )
            current.append(call)
            if i == 0:
                for t in threads:
                    t.start()
            until(lambda: counted.calls > 50, timeout_s=10, message="load on the server")  # noqa: B023
            assert server.drain_and_stop(drain_timeout_s=10, grace_s=5)
    finally:
        done.set()
        for t in threads:
            t.join(5)
        for channel in channels:
            channel.close()
    assert failures == {}


@pytest.mark.parametrize(
    ("address", "why"),
    [("localhost:50051", "IP address"), ("127.0.0.1:0", "not 0"), ("127.0.0.1", "port")],
)
def test_an_address_names_an_ip_and_a_port(address: str, why: str) -> None:
    server = DrainableServer(futures.ThreadPoolExecutor(1))
    try:
        with pytest.raises(ValueError, match=why):
            server.add_insecure_port(address)
    finally:
        server.stop(None)


@pytest.mark.parametrize(
    ("address", "name_tail"),
    [
        ("10.244.0.7:50051", "/grpc/server/10.244.0.7:50051"),
        ("[::1]:50051", "/grpc/server/%5B::1%5D:50051"),
    ],
)
def test_listener_names_are_the_ones_grpc_asks_for(address: str, name_tail: str) -> None:
    """grpc percent-encodes the address in an xdstp: name (IPv6 brackets)."""
    assert server_listener_name(address).endswith(name_tail)


def test_a_tls_server_starts_serves_and_drains() -> None:
    """start() cannot probe a TLS port without the client's credentials: grpc's ACK suffices."""
    ca, cert, key = make_pki("greeter.ns")
    counted, port = Counted(), _free_port()
    server = DrainableServer(futures.ThreadPoolExecutor(2), handlers=[counted.handler()])
    server.add_secure_port(f"127.0.0.1:{port}", grpc.ssl_server_credentials([(key, cert)]))
    server.start()
    try:
        creds = grpc.ssl_channel_credentials(root_certificates=ca)
        options = [("grpc.ssl_target_name_override", "greeter.ns")]
        with grpc.secure_channel(f"127.0.0.1:{port}", creds, options=options) as channel:
            call = channel.unary_unary(METHOD)
            assert call(b"", timeout=5, wait_for_ready=True) == b"ok"
            assert server.drain(timeout_s=10)
            with pytest.raises(grpc.RpcError):
                call(b"", timeout=5)
        assert counted.calls == 1
    finally:
        server.stop(None).wait()
