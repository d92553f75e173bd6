"""Calls cancelled when a gRPC server stops under load: plain ``stop(grace)`` vs drain first.

Each round starts a server on a fresh loopback port and a round_robin channel
over it and a server that stays; ``--threads`` threads call at ``--rate`` in
all (1 s deadline, no wait_for_ready) while the round's server stops. The
load never pauses, so every stop happens while calls are on the wire.

- ``plain_stop``: ``grpc.server`` and ``stop(5)``: grpc's core cancels the
  calls it received but had not handed to a handler yet, and those that
  arrive before the client has read the GOAWAY it sends as it shuts down;
- ``aio_plain_stop``: the same with ``grpc.aio.server`` (grpc offers it no
  xDS mode, hence no drain): its shutdown is the same core's;
- ``drain``: :class:`kuberesolver.server.DrainableServer`, ``drain_and_stop``:
  GOAWAY while still serving, stop once the client has left.

Last line: one JSON object with the failures per setting and their ratio.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from collections.abc import Callable
from concurrent import futures
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc
from _common import emit, options

from kuberesolver.server import DrainableServer
from testenv.rollout import Load

METHOD = "/bench.Drain/Hello"


def _handler() -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(
        "bench.Drain", {"Hello": grpc.unary_unary_rpc_method_handler(lambda req, ctx: b"ok")}
    )


def _plain(port: int) -> grpc.Server:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), handlers=[_handler()])
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    return server


def _drainable(port: int) -> DrainableServer:
    server = DrainableServer(futures.ThreadPoolExecutor(max_workers=8), handlers=[_handler()])
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    return server


class _AioServer:
    """A ``grpc.aio`` server on a loop of its own thread, driven from this one."""

    loop: asyncio.AbstractEventLoop | None = None

    def __init__(self, port: int) -> None:
        if _AioServer.loop is None:
            _AioServer.loop = asyncio.new_event_loop()
            threading.Thread(target=_AioServer.loop.run_forever, daemon=True).start()
        self._loop = _AioServer.loop
        self._server = self._run(self._start(port))

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    @staticmethod
    async def _start(port: int) -> grpc.aio.Server:
        async def hello(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
            return b"ok"

        server = grpc.aio.server()
        server.add_generic_rpc_handlers(
            [
                grpc.method_handlers_generic_handler(
                    "bench.Drain", {"Hello": grpc.unary_unary_rpc_method_handler(hello)}
                )
            ]
        )
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        return server

    def stop(self, grace_s: float) -> None:
        self._run(self._server.stop(grace_s))


def _channel(ports: list[int]) -> grpc.Channel:
    config = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})
    return grpc.insecure_channel(
        "ipv4:" + ",".join(f"127.0.0.1:{p}" for p in ports),
        options=[("grpc.service_config", config), ("grpc.use_local_subchannel_pool", 1)],
    )


def measure(
    start: Callable[[int], Any],
    stop: Callable[[Any], bool | None],
    stops: int,
    base: int,
    **load: Any,
) -> dict[str, Any]:
    stable = _plain(base)
    channels: list[grpc.Channel] = [_channel([base])]
    current = [channels[0].unary_unary(METHOD)]  # the channel the load calls, swapped per stop
    runner = Load(lambda: current[0], rate_per_s=load["rate"], threads=load["threads"]).start()
    drained = 0
    stop_s: list[float] = []
    try:
        for i in range(stops):
            server = start(base + 1 + i)
            channel = _channel([base, base + 1 + i])
            call = channel.unary_unary(METHOD)
            for _ in range(10):  # both subchannels connected before the load moves here
                call(b"", timeout=5, wait_for_ready=True)
            current[0] = call
            channels.append(channel)
            time.sleep(0.3)  # load on both servers: the stop happens under load
            began = time.monotonic()
            drained += bool(stop(server))
            stop_s.append(time.monotonic() - began)
            time.sleep(0.3)
    finally:
        runner.stop()
        for channel in channels:
            channel.close()
        stable.stop(None)
    failed = sum(runner.failures.values())
    return {
        "stops": stops,
        "rpcs": runner.ok + failed,
        "failed_rpcs": failed,
        "failed_per_stop": round(failed / stops, 3),
        "failures_by_code": dict(sorted(runner.failures.items())),
        "drained_before_stop": drained,
        "stop_ms_max": round(max(stop_s) * 1000, 1),
    }


def main() -> int:
    args = options(
        __doc__.split("\n")[0],
        stops=(int, 60),
        rate=(float, 800.0),
        threads=(int, 8),
        port=(int, 42000),
    )
    load = {"threads": args.threads, "rate": args.rate}
    results: dict[str, Any] = {}
    results["plain_stop"] = measure(
        _plain, lambda s: s.stop(5).wait() and None, args.stops, args.port, **load
    )
    print(f"plain_stop: {results['plain_stop']}", file=sys.stderr)
    results["aio_plain_stop"] = measure(
        _AioServer, lambda s: s.stop(5), args.stops, args.port + 2000, **load
    )
    print(f"aio_plain_stop: {results['aio_plain_stop']}", file=sys.stderr)
    results["drain"] = measure(
        _drainable, lambda s: s.drain_and_stop(5, 5), args.stops, args.port + 1000, **load
    )
    print(f"drain: {results['drain']}", file=sys.stderr)
    results["ratios"] = {
        "failed_rpcs_plain_stop_vs_drain": round(
            results["plain_stop"]["failed_rpcs"] / max(1, results["drain"]["failed_rpcs"]), 2
        )
    }
    emit(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
