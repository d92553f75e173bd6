"""asyncio twins: real grpc.aio.Channel objects with interceptors and context managers."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

import kuberesolver.aio
from kuberesolver.client.channel import registry
from tests.client import _support
from tests.client._support import TARGET, UNARY, Backends, make_snapshot, publish


async def test_real_aio_channel_all_call_shapes(
    backends: Backends, root: Path, snapdir: Path
) -> None:
    a = backends("127.0.0.2", "a")
    publish(snapdir, make_snapshot([a.endpoint()]))
    async with kuberesolver.aio.insecure_channel(
        TARGET, snapshot_dir=root, compression=grpc.Compression.Gzip
    ) as ch:
        assert isinstance(ch, grpc.aio.Channel)
        call = ch.unary_unary(UNARY)(b"ab", timeout=5, metadata=(("x-echo", "hi"),))
        assert await call == b"a|hi|2"
        assert ("x-echoed", "hi") in tuple(await call.initial_metadata())
        got = [r async for r in ch.unary_stream(_support.SERVER_STREAM)(b"2", timeout=5)]
        assert got == [b"a|0", b"a|1"]

        async def requests() -> Any:
            for r in (b"1", b"2"):
                yield r

        assert await ch.stream_unary(_support.CLIENT_STREAM)(requests(), timeout=5) == b"a|2"
        assert [r async for r in ch.stream_stream(_support.BIDI)(requests(), timeout=5)] == [
            b"a|1",
            b"a|2",
        ]
        stub = health_pb2_grpc.HealthStub(ch)
        reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    assert registry().watched() == []


async def test_aio_interceptors(backends: Backends, root: Path, snapdir: Path) -> None:
    a = backends("127.0.0.2", "a")
    publish(snapdir, make_snapshot([a.endpoint()]))
    seen: list[str] = []

    class AddHeader(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
        async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
            seen.append(
                details.method.decode() if isinstance(details.method, bytes) else details.method
            )
            details = details._replace(metadata=grpc.aio.Metadata(("x-echo", "aio")))
            return await continuation(details, request)

    ch = kuberesolver.aio.insecure_channel(TARGET, snapshot_dir=root, interceptors=[AddHeader()])
    try:
        assert await ch.unary_unary(UNARY)(b"", timeout=5) == b"a|aio|0"
    finally:
        await ch.close()
        await ch.close()  # idempotent
    assert seen == [UNARY]
    assert registry().watched() == []


async def test_aio_follows_updates_and_wait_for_ready(
    backends: Backends, root: Path, snapdir: Path
) -> None:
    a, b = backends("127.0.0.2", "a"), backends("127.0.0.3", "b")
    publish(snapdir, make_snapshot([]))
    async with kuberesolver.aio.insecure_channel(TARGET, snapshot_dir=root) as ch:
        call = ch.unary_unary(UNARY)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call(b"", timeout=10)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        waiting = asyncio.ensure_future(call(b"", timeout=30, wait_for_ready=True))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        publish(snapdir, make_snapshot([a.endpoint(), b.endpoint()], revision=2))
        assert (await waiting).split(b"|")[0] in (b"a", b"b")
        names = {(await call(b"", timeout=5)).split(b"|")[0] for _ in range(10)}
        assert names == {b"a", b"b"}
    assert a.connections == 1
    assert b.connections == 1


async def test_aio_deadline(backends: Backends, root: Path, snapdir: Path) -> None:
    a = backends("127.0.0.2")
    a.delay_s = 1.0
    publish(snapdir, make_snapshot([a.endpoint()]))
    async with kuberesolver.aio.insecure_channel(TARGET, snapshot_dir=root) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await ch.unary_unary(UNARY)(b"", timeout=0.1)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
