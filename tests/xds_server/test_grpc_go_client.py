"""grpc-go's own xDS client (no kuberesolver code, built from the module proxy) reaches the
same targets through the same server: the no-library claim in a second language."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from kuberesolver.xds_server.store import XdsStore
from testenv.grpc_go import xds_client
from testenv.wait import until
from tests.client._support import Backend, make_snapshot
from tests.xds_server.conftest import AUTHORITY, Client, ServerThread

TARGET = f"xds://{AUTHORITY}/greeter.ns"


@pytest.fixture(scope="module")
def go_client() -> Path:
    return xds_client()


def only(client: Client, names: set[str], n: int = 20) -> bool:
    result = client.calls(n)
    return not result["errors"] and set(result["counts"]) == names


@pytest.mark.timeout(900)  # a cold build of the client takes minutes
def test_a_grpc_go_channel_follows_the_store(
    store: XdsStore,
    xds: ServerThread,
    bootstrap: Path,
    go_client: Path,
    backends: Callable[..., Backend],
) -> None:
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
