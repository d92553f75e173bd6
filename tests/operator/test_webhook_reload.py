"""A renewed certificate is served by kopf's running WebhookServer, without a restart.

A real ``kopf.WebhookServer`` on 127.0.0.1 with one SSL context: the test reads
the certificate that a new TLS handshake gets, and keeps one HTTPS
connection open across the reload (a restarted server would close it).
"""

from __future__ import annotations

import asyncio
import datetime
import socket
import ssl
from pathlib import Path
from typing import Any

import kopf
import pytest
from cryptography import x509

from kuberesolver.operator.webhook.certs import Lifetimes, Material, plan, serving_names
from kuberesolver.operator.webhook.tls import (
    CertKeeper,
    ReloadingServer,
    TlsSettings,
    placeholder,
    write_pair,
)
from testenv.controlplane import free_port
from testenv.wait import until_async

NAMES = serving_names("kuberesolver-webhook", "kuberesolver-system", ["127.0.0.1"])


def fresh() -> Material:
    return plan(None, NAMES, datetime.datetime.now(datetime.UTC), Lifetimes()).material


def served_serial(port: int) -> int:
    pem = ssl.get_server_certificate(("127.0.0.1", port), timeout=5)
    return int(x509.load_pem_x509_certificate(pem.encode()).serial_number)


async def review(data: Any, **_: Any) -> Any:
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": {}}


def open_connection(port: int, ca: bytes) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cadata=ca.decode())
    return ctx.wrap_socket(
        socket.create_connection(("127.0.0.1", port), timeout=5), server_hostname="127.0.0.1"
    )


def post(conn: ssl.SSLSocket) -> bytes:
    conn.sendall(
        b"POST /x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 2\r\nConnection: keep-alive\r\n\r\n{}"
    )
    return conn.recv(65536)


async def test_a_renewed_certificate_is_served_on_the_same_listener(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cert_dir, boot = tmp_path / "certs", tmp_path / "boot"
    cert_dir.mkdir()
    boot.mkdir()
    first, second = fresh(), fresh()
    write_pair(cert_dir, first)
    certfile, pkeyfile = write_pair(boot, placeholder(NAMES))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    settings = TlsSettings(mode="files", cert_dir=str(cert_dir), check_s=1.0)
    keeper = CertKeeper(settings, None, lambda: False, context)
    port = free_port()
    server = kopf.WebhookServer(
        addr="127.0.0.1", port=port, context=context, certfile=str(certfile), pkeyfile=str(pkeyfile)
    )
    starts = 0

    async def serve() -> None:
        nonlocal starts
        async for _ in ReloadingServer(server, keeper)(review):
            starts += 1

    keeper_task = asyncio.create_task(keeper.run())
    server_task = asyncio.create_task(serve())
    try:
        await until_async(lambda: starts == 1, timeout_s=10)
        got = await until_async(
            lambda: _serial_is(port, first.serial), timeout_s=10, message="the first certificate"
        )
        assert got
        # An HTTPS connection made now, trusting only the first CA, answered.
        conn = await asyncio.to_thread(open_connection, port, first.bundle)
        assert (await asyncio.to_thread(post, conn)).startswith(b"HTTP/1.1 ")

        write_pair(cert_dir, second)  # as kubelet would update the mounted Secret
        await until_async(
            lambda: _serial_is(port, second.serial), timeout_s=10, message="the new certificate"
        )
        # Same server: not restarted (the open connection still works), one start only.
        assert (await asyncio.to_thread(post, conn)).startswith(b"HTTP/1.1 ")
        assert starts == 1
        conn.close()

        # A key that does not match: refused with a log line, the last good one served.
        write_pair(cert_dir, Material(first.cert, second.key, b"", b""))
        await until_async(
            lambda: "cannot be served" in caplog.text, timeout_s=10, message="the refusal"
        )
        assert await _serial_is(port, second.serial)
    finally:
        server_task.cancel()
        keeper_task.cancel()
        await asyncio.gather(server_task, keeper_task, return_exceptions=True)


async def _serial_is(port: int, serial: int) -> bool:
    return await asyncio.to_thread(served_serial, port) == serial
