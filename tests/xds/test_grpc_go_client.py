"""grpc-go's own xDS client (no kuberesolver code, built from the module proxy) reaches the
same targets through the same server: the no-library claim in a second language."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from kuberesolver.xds.ads_aio import StreamInfo
from testenv.grpc_go import xds_client
from testenv.wait import until
from tests.client._support import make_snapshot
from tests.xds.conftest import AUTHORITY, Client, Rig, ServerThread, acked_all, only

GREETER = ("ns", "greeter")
TARGET = f"xds://{AUTHORITY}/greeter.ns"


@pytest.fixture(scope="module")
def go_client() -> Path:
    return xds_client()


@pytest.mark.timeout(900)  # a cold build of the client takes minutes
def test_a_grpc_go_channel_follows_the_store(rig: Rig, bootstrap: Path, go_client: Path) -> None:
    store, xds, _, backends = rig
    b1, b2 = backends("127.0.0.2", "b1"), backends("127.0.0.3", "b2")
    store.put(("ns", "greeter"), make_snapshot([b1.endpoint()]))
    client = Client(bootstrap, [TARGET], command=(str(go_client),))
    try:
        assert client.calls(10) == {"counts": {"b1": 10}, "errors": []}
        store.put(("ns", "greeter"), make_snapshot([b1.endpoint(), b2.endpoint()], revision=2))
        until(lambda: only(client, {"b1", "b2"}), timeout_s=10, message="b2 added")
        draining = [b1.endpoint(terminating=True), b2.endpoint()]
        store.put(("ns", "greeter"), make_snapshot(draining, revision=3))
        until(lambda: only(client, {"b2"}), timeout_s=10, message="b1 draining")
    finally:
        client.close()
    for kind in ("Listener", "Cluster", "ClusterLoadAssignment"):  # grpc-go took every one
        assert xds.server.metrics.value("kuberesolver_xds_nacks_total", type=kind) == 0
        assert xds.server.metrics.value("kuberesolver_xds_acks_total", type=kind) >= 1


def timeout_config(timeout: str) -> dict[str, Any]:
    """A service config whose only rule sets a ``timeout`` on every method of the test service."""
    return {"methodConfig": [{"name": [{"service": "kr.test.Echo"}], "timeout": timeout}]}


def settled_as(xds: ServerThread, listener: str, agent: str, listeners: int) -> StreamInfo | None:
    """The stream of the client named ``agent*`` subscribed to ``listener``, once it has
    acked every response and got ``listeners`` Listeners."""
    for info in xds.server.streams():
        if listener in info.subscribed.get("Listener", ()) and info.user_agent.startswith(agent):
            return info if acked_all(info) and info.responses["Listener"] == listeners else None
    return None


@pytest.mark.timeout(900)  # a cold build of the client takes minutes
def test_grpc_go_is_served_the_method_timeout_and_ends_the_call_at_it(
    rig: Rig, bootstrap: Path, go_client: Path
) -> None:
    store, xds, clients, backends = rig
    b1 = backends("127.0.0.2", "b1")
    store.put(GREETER, make_snapshot([b1.endpoint()]), timeout_config("10s"))
    listener = store.listener(GREETER)
    go = Client(bootstrap, [TARGET], command=(str(go_client),))
    try:
        grpcio = clients(TARGET)
        assert go.calls(1) == grpcio.calls(1) == {"counts": {"b1": 1}, "errors": []}
        go_stream = until(lambda: settled_as(xds, listener, "gRPC Go", 1), timeout_s=10)
        c_stream = until(lambda: settled_as(xds, listener, "gRPC C-core", 1), timeout_s=10)
        assert (go_stream.timeouts, c_stream.timeouts) == (True, False)

        # only the timeout changes: grpc-go's stream gets the new Listener (and acks it)
        store.put(GREETER, make_snapshot([b1.endpoint()], revision=2), timeout_config("1s"))
        until(lambda: settled_as(xds, listener, "gRPC Go", 2), timeout_s=10)
        b1.delay_s = 2.5  # longer than the 1 s timeout, shorter than the calls' own 5 s
        started = time.monotonic()
        result = go.calls(1)
        elapsed = time.monotonic() - started
        assert result["counts"] == {}
        assert result["errors"][0].startswith("rpc error: code = DeadlineExceeded"), result
        assert elapsed >= 1.0, elapsed  # at the timeout, not before it (the C core's flaw)
        print(f"grpc-go: DeadlineExceeded after {elapsed:.3f} s (method timeout 1 s)")

        # grpcio's C core is sent neither version: its call runs to the backend's answer
        assert grpcio.calls(1) == {"counts": {"b1": 1}, "errors": []}
        c_stream = until(lambda: settled_as(xds, listener, "gRPC C-core", 1), timeout_s=10)
        assert c_stream.responses["Listener"] == 1
    finally:
        go.close()
    assert xds.server.metrics.value("kuberesolver_xds_nacks_total", type="Listener") == 0
