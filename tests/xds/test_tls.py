"""The ADS server over mutual TLS, with server credentials from files and a client bootstrap
whose ``tls`` channel creds (gRFC A65) name the client's files."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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


def calls_over_tls(
    tls_xds: ServerThread, bootstrap_path: Path, n: int, *tls: str
) -> dict[str, Any]:
    """``n`` calls to greeter.ns by a client whose bootstrap has the ``tls`` arguments."""
    client = Client(write_bootstrap(bootstrap_path, tls_xds.uri, *tls), [TARGET])
    try:
        return client.calls(n)
    finally:
        client.close()


@pytest.fixture
def b1(store: XdsStore, backends: Callable[..., Backend]) -> Backend:
    """The one backend of greeter.ns."""
    backend = backends("127.0.0.2", "b1")
    store.put(("ns", "greeter"), make_snapshot([backend.endpoint()]))
    return backend


def test_a_client_with_its_certificate_is_served(
    b1: Backend, tls_xds: ServerThread, ca: CertificateAuthority, tmp_path: Path
) -> None:
    mine = ca.issue("client", "client")
    result = calls_over_tls(
        tls_xds, tmp_path / "tls.json", 10,
        "--ca-file", str(ca.cert_path), "--cert-file", str(mine.cert), "--key-file", str(mine.key),
    )  # fmt: skip
    assert result == {"counts": {"b1": 10}, "errors": []}


def test_a_client_without_a_certificate_gets_nothing(
    b1: Backend, tls_xds: ServerThread, ca: CertificateAuthority, tmp_path: Path
) -> None:
    result = calls_over_tls(tls_xds, tmp_path / "tls.json", 1, "--ca-file", str(ca.cert_path))
    assert result["counts"] == {}
    assert result["errors"]
    assert b1.calls == 0
    assert tls_xds.server.streams() == []
