"""The ADS server with an authorizer: a stream sees only the targets its token may see, and a
grant taken away (or given) reaches the client at the next recheck.

Real grpcio clients over TLS present a token as gRFC A97 call credentials; the authorizer
here is a table (the operator's, on the real apiserver, is in
tests/integration/operator/test_xds_auth_operator.py).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from kuberesolver.xds.ads_aio import server_credentials
from kuberesolver.xds.store import Key, XdsStore
from testenv.pki import CertificateAuthority
from testenv.wait import until
from tests.client._support import Backend, make_snapshot
from tests.xds.conftest import AUTHORITY, Client, ServerThread, write_bootstrap


def jwt(subject: str) -> str:
    """An unsigned JWT with an ``exp`` an hour ahead (grpc's A97 creds read ``exp``)."""

    def part(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    claims = {"sub": subject, "exp": int(time.time()) + 3600}
    return f"{part({'alg': 'none'})}.{part(claims)}.c2ln"


class Table:
    """Grants by (token, key), for targets the store serves (as the operator's authorizer
    knows only the targets it serves); records what it was asked."""

    def __init__(self, store: XdsStore) -> None:
        self.store = store
        self.grants: set[tuple[str, Key]] = set()
        self.asked: list[tuple[str, Key]] = []

    async def allowed(self, token: str, key: Key) -> bool:
        self.asked.append((token, key))
        return (token, key) in self.grants and self.store.get(key) is not None


@pytest.fixture
def table(store: XdsStore) -> Table:
    return Table(store)


class Guarded(NamedTuple):
    """A TLS server that asks the table, and the token its clients present."""

    server: ServerThread
    token: str
    bootstrap: Path

    def client(self, *names: str) -> Client:
        """A grpcio client with a channel to each ``name.namespace``, presenting the token."""
        return Client(self.bootstrap, [f"xds://{AUTHORITY}/{name}" for name in names])


@pytest.fixture
def guarded(
    store: XdsStore, table: Table, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Guarded]:
    ca = CertificateAuthority(tmp_path)
    serving = ca.issue("xds", "xds", ip_addresses=("127.0.0.1",), server=True)
    server = ServerThread(store, server_credentials(serving.cert, serving.key))
    server.server.authorizer = table
    server.server.recheck_s = 0.5
    token = jwt("me")
    (tmp_path / "token").write_text(token)
    bootstrap = write_bootstrap(
        tmp_path / "b.json",
        server.uri,
        "--ca-file",
        str(ca.cert_path),
        "--token-file",
        str(tmp_path / "token"),
    )
    monkeypatch.setenv("GRPC_EXPERIMENTAL_XDS_BOOTSTRAP_CALL_CREDS", "true")
    yield Guarded(server, token, bootstrap)
    server.stop()


def test_a_stream_sees_what_its_token_may_see_and_follows_grants(
    store: XdsStore, table: Table, guarded: Guarded, backends: Callable[..., Backend]
) -> None:
    b1, b2 = backends("127.0.0.2", "b1"), backends("127.0.0.3", "b2")
    store.put(("ns", "mine"), make_snapshot([b1.endpoint()]))
    store.put(("ns", "theirs"), make_snapshot([b2.endpoint()]))
    token = guarded.token
    table.grants.add((token, ("ns", "mine")))
    client = guarded.client("mine.ns", "theirs.ns")
    try:
        assert client.calls(5, 0) == {"counts": {"b1": 5}, "errors": []}
        refused = client.calls(1, 1)
        assert refused["counts"] == {}
        assert refused["errors"]
        assert (token, ("ns", "theirs")) in table.asked  # the token the client sent was asked

        table.grants.clear()  # RBAC taken away: gone at the next recheck
        until(lambda: client.calls(1, 0)["counts"] == {}, timeout_s=30, message="mine gone")
        table.grants.add((token, ("ns", "theirs")))
        until(lambda: client.calls(3, 1)["counts"] == {"b2": 3}, timeout_s=30, message="theirs")
    finally:
        client.close()


def test_a_target_created_after_the_client_asked_is_served_without_waiting_for_a_recheck(
    store: XdsStore, table: Table, guarded: Guarded, backends: Callable[..., Backend]
) -> None:
    guarded.server.server.recheck_s = 3600  # only the target's arrival may change the answer
    b1 = backends("127.0.0.2", "b1")
    table.grants.add((guarded.token, ("ns", "late")))
    client = guarded.client("late.ns")
    try:
        assert client.calls(1)["counts"] == {}  # the channel subscribes: not there yet
        assert (guarded.token, ("ns", "late")) in table.asked
        store.put(("ns", "late"), make_snapshot([b1.endpoint()]))
        until(lambda: client.calls(2)["counts"] == {"b1": 2}, timeout_s=30, message="late")
    finally:
        client.close()
