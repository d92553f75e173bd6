"""The ADS server over mutual TLS, with server credentials from files and a client bootstrap
whose ``tls`` channel creds (gRFC A65) name the client's files."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kuberesolver.xds.ads_aio import server_credentials
from kuberesolver.xds.store import XdsStore
from testenv.pki import CertificateAuthority
from tests.client._support import Backend, make_snapshot
from tests.xds.conftest import AUTHORITY, Client, ServerThread, write_bootstrap

TARGET = f"xds://{AUTHORITY}/greeter.ns"


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority(tmp_path)


@pytest.fixture
def tls_xds(store: XdsStore, ca: CertificateAuthority) -> Iterator[ServerThread]:
    serving = ca.issue("xds", "xds", ip_addresses=("127.0.0.1",), server=True)
    server = ServerThread(store, server_credentials(serving.cert, serving.key, ca.cert_path))
    yield server
    server.stop()


def test_a_client_with_its_certificate_is_served(
    store: XdsStore,
    tls_xds: ServerThread,
    ca: CertificateAuthority,
    tmp_path: Path,
    backends: Callable[..., Backend],
) -> None:
    b1 = backends("127.0.0.2", "b1")
    store.put(("ns", "greeter"), make_snapshot([b1.endpoint()]))
    mine = ca.issue("client", "client")
    bootstrap = write_bootstrap(
        tmp_path / "tls.json", tls_xds.uri,
        "--ca-file", str(ca.cert_path), "--cert-file", str(mine.cert), "--key-file", str(mine.key),
    )  # fmt: skip
    client = Client(bootstrap, [TARGET])
    try:
        assert client.calls(10) == {"counts": {"b1": 10}, "errors": []}
    finally:
        client.close()


def test_a_client_without_a_certificate_gets_nothing(
    store: XdsStore,
    tls_xds: ServerThread,
    ca: CertificateAuthority,
    tmp_path: Path,
    backends: Callable[..., Backend],
) -> None:
    b1 = backends("127.0.0.2", "b1")
    store.put(("ns", "greeter"), make_snapshot([b1.endpoint()]))
    bootstrap = write_bootstrap(tmp_path / "tls.json", tls_xds.uri, "--ca-file", str(ca.cert_path))
    client = Client(bootstrap, [TARGET])
    try:
        result = client.calls(1)
    finally:
        client.close()
    assert result["counts"] == {}
    assert result["errors"]
    assert b1.calls == 0
    assert tls_xds.server.streams() == []
