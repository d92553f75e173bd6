"""Real gRPC backends on 127.0.0.x and real snapshot files, for the client tests."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2

from kuberesolver import load_report
from kuberesolver.core.atomic_writer import write_atomic
from kuberesolver.core.snapshot import ENDPOINTS_KEY, Endpoint, Snapshot, encode
from tests.snapshots import make_snapshot as make_snapshot  # here for the client and xDS tests

SERVICE = "kr.test.Echo"
UNARY = f"/{SERVICE}/Unary"
SERVER_STREAM = f"/{SERVICE}/ServerStream"
CLIENT_STREAM = f"/{SERVICE}/ClientStream"
BIDI = f"/{SERVICE}/Bidi"


class Backend:
    """One real grpc server: counts calls and the client connections (peers) it saw."""

    def __init__(
        self,
        host: str,
        name: str | None = None,
        *,
        credentials: grpc.ServerCredentials | None = None,
        port: int = 0,
        workers: int = 8,
    ) -> None:
        self.host = host
        self.name = name or host
        self.calls = 0
        self.peers: Counter[str] = Counter()
        self.authorities: Counter[str] = Counter()
        self.delay_s = 0.0
        self.fail_with: grpc.StatusCode | None = None
        self.started = threading.Event()  # set when a call starts (for in-flight tests)
        self.release = threading.Event()  # a call with metadata hold=1 waits for it
        self.orca_cpu: float | None = None
        self._lock = threading.Lock()
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=workers),
            options=[("grpc.so_reuseport", 0)],
        )
        handlers = {
            "Unary": grpc.unary_unary_rpc_method_handler(self._unary),
            "ServerStream": grpc.unary_stream_rpc_method_handler(self._server_stream),
            "ClientStream": grpc.stream_unary_rpc_method_handler(self._client_stream),
            "Bidi": grpc.stream_stream_rpc_method_handler(self._bidi),
        }
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, handlers),)
        )
        self.health = health.HealthServicer()
        self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        from grpc_health.v1 import health_pb2_grpc

        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        address = f"{host}:{port}"
        if credentials is None:
            self.port = self.server.add_insecure_port(address)
        else:
            self.port = self.server.add_secure_port(address, credentials)
        self.server.start()

    def endpoint(self, **kw: Any) -> Endpoint:
        return Endpoint(address=self.host, port=self.port, pod=self.name, **kw)

    def _seen(self, context: grpc.ServicerContext) -> None:
        md = dict(context.invocation_metadata())
        with self._lock:
            self.calls += 1
            self.peers[context.peer()] += 1
            self.authorities[_authority(context)] += 1
        if md.get("hold") == "1":
            self.started.set()
            self.release.wait(30)
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.orca_cpu is not None:
            report = load_report(cpu_utilization=self.orca_cpu, rps=100.0)
            context.set_trailing_metadata((report,))
        if self.fail_with is not None:
            context.abort(self.fail_with, f"{self.name} is failing on purpose")

    def _reply(self, context: grpc.ServicerContext, request: bytes) -> bytes:
        md = dict(context.invocation_metadata())
        echo = md.get("x-echo", "")
        if echo:
            context.send_initial_metadata((("x-echoed", echo),))
        return f"{self.name}|{echo}|{len(request)}".encode()

    def _unary(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self._seen(context)
        return self._reply(context, request)

    def _server_stream(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        self._seen(context)
        for i in range(int(request or b"3")):
            yield f"{self.name}|{i}".encode()

    def _client_stream(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        self._seen(context)
        n = sum(1 for _ in requests)
        return f"{self.name}|{n}".encode()

    def _bidi(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        self._seen(context)
        for r in requests:
            yield self.name.encode() + b"|" + r

    @property
    def connections(self) -> int:
        """How many distinct client connections made calls here."""
        with self._lock:
            return len(self.peers)

    def stop(self) -> None:
        self.release.set()
        self.server.stop(None).wait()


def _authority(context: grpc.ServicerContext) -> str:
    """The call's ``:authority`` (grpc Python keeps it off invocation_metadata)."""
    host = context._rpc_event.call_details.host  # type: ignore[attr-defined]
    return host.decode() if isinstance(host, bytes) else str(host)


def publish(directory: Path, snapshot: Snapshot) -> bool:
    """Write a snapshot the way kubelet does (atomic ``..data`` swap)."""
    return write_atomic(directory, {ENDPOINTS_KEY: encode(snapshot).encode()})


def call_each_stream_shape(ch: grpc.Channel) -> None:
    """One server-, one client- and one bidi-streaming call (each is one call at a server)."""
    assert len(list(ch.unary_stream(SERVER_STREAM)(b"2", timeout=5))) == 2
    ch.stream_unary(CLIENT_STREAM)(iter([b"1", b"2"]), timeout=5)
    assert len(list(ch.stream_stream(BIDI)(iter([b"x"]), timeout=5))) == 1


async def call_each_stream_shape_aio(ch: grpc.aio.Channel) -> None:
    """The asyncio twin of :func:`call_each_stream_shape`."""

    async def two() -> AsyncIterator[bytes]:
        for r in (b"1", b"2"):
            yield r

    assert len([r async for r in ch.unary_stream(SERVER_STREAM)(b"2", timeout=5)]) == 2
    await ch.stream_unary(CLIENT_STREAM)(two(), timeout=5)
    assert len([r async for r in ch.stream_stream(BIDI)(two(), timeout=5)]) == 2


def call_names(call: Callable[..., bytes], n: int, **kw: Any) -> Counter[str]:
    """Make ``n`` unary calls; count the backends that answered."""
    return Counter(call(b"", **kw).decode().split("|")[0] for _ in range(n))


TARGET = "kubernetes:///greeter.ns:grpc"
"""The target most client tests open: Service greeter in namespace ns, port grpc."""

Backends = Callable[..., Backend]
"""The ``backends`` fixture: ``backends(ip, name)`` starts a real server on that address."""
