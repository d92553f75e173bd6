"""TLS: the TLS name and :authority default to service.namespace; an option overrides them."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import kuberesolver
import kuberesolver.aio
from tests.client._support import TARGET, UNARY, Backend, make_snapshot, publish


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_pki(dns_name: str) -> tuple[bytes, bytes, bytes]:
    """(ca_pem, server_cert_pem, server_key_pem) with the server cert naming ``dns_name``."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kuberesolver test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return ca.public_bytes(pem), cert.public_bytes(pem), _pem_key(key)


@pytest.fixture(scope="module")
def pki() -> tuple[bytes, bytes, bytes]:
    return make_pki("greeter.ns")


def _tls_backend(backends: Callable[..., Backend], pki: tuple[bytes, bytes, bytes]) -> Backend:
    _, cert, key = pki
    creds = grpc.ssl_server_credentials([(key, cert)])
    return backends("127.0.0.2", "tls", credentials=creds)


def test_tls_name_defaults_to_service_namespace(
    backends: Callable[..., Backend], pki: tuple[bytes, bytes, bytes], root: Path, snapdir: Path
) -> None:
    b = _tls_backend(backends, pki)
    publish(snapdir, make_snapshot([b.endpoint()]))
    creds = grpc.ssl_channel_credentials(root_certificates=pki[0])
    with kuberesolver.secure_channel(TARGET, creds, snapshot_dir=root) as ch:
        assert ch.unary_unary(UNARY)(b"", timeout=10) == b"tls||0"
    assert b.authorities == {"greeter.ns": 1}


async def test_aio_tls(
    backends: Callable[..., Backend], pki: tuple[bytes, bytes, bytes], root: Path, snapdir: Path
) -> None:
    b = _tls_backend(backends, pki)
    publish(snapdir, make_snapshot([b.endpoint()]))
    creds = grpc.ssl_channel_credentials(root_certificates=pki[0])
    async with kuberesolver.aio.secure_channel(TARGET, creds, snapshot_dir=root) as ch:
        assert await ch.unary_unary(UNARY)(b"", timeout=10) == b"tls||0"


def test_wrong_name_is_refused_and_override_fixes_it(
    backends: Callable[..., Backend], root: Path, snapdir: Path
) -> None:
    pki = make_pki("greeter.example.com")
    b = _tls_backend(backends, pki)
    publish(snapdir, make_snapshot([b.endpoint()]))
    creds = grpc.ssl_channel_credentials(root_certificates=pki[0])
    with kuberesolver.secure_channel(TARGET, creds, snapshot_dir=root) as ch:
        with pytest.raises(grpc.RpcError) as info:
            ch.unary_unary(UNARY)(b"", timeout=10)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert b.calls == 0
    with kuberesolver.secure_channel(
        TARGET, creds, snapshot_dir=root, server_name="greeter.example.com"
    ) as ch:
        assert ch.unary_unary(UNARY)(b"", timeout=10) == b"tls||0"
    assert b.authorities == {"greeter.example.com": 1}
