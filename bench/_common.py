"""Shared pieces of the client benchmarks: backends in a separate process, snapshot files.

Backends run in their own process so that the client under test owns its
process (and its GIL), as it would in production. Each backend counts the
distinct client connections (peers) it served, can be made slow, and can
report its load to weighted round robin through the per-call ORCA trailer
``endpoint-load-metrics-bin``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import statistics
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from concurrent import futures
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

UNARY = "/kr.bench.Echo/Unary"


def options(description: str | None, **specs: tuple[type[float], float]) -> argparse.Namespace:
    """The command line: ``name=(type, default)`` is ``--name`` (``_`` written ``-``)."""
    parser = argparse.ArgumentParser(description=description)
    for name, (kind, default) in specs.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=default)
    return parser.parse_args()


def emit(result: dict[str, Any]) -> None:
    """Print the result as one JSON object on the last line of output."""
    sys.stdout.flush()
    print(json.dumps(result, sort_keys=True), flush=True)


def percentile(values: Sequence[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


# -- backends (in the child process) ----------------------------------------


class _Backend:
    def __init__(self, host: str, workers: int, report_load: bool) -> None:
        import grpc

        self.name = host
        self.delay_s = 0.0
        self.report_load = report_load
        self.peers: set[str] = set()
        self.calls = 0
        self.inflight = 0
        self._lock = threading.Lock()
        self._window: deque[tuple[float, float]] = deque()  # (time, inflight) samples
        self._workers = workers
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=workers),
            options=[("grpc.so_reuseport", 0)],
        )
        handler = grpc.method_handlers_generic_handler(
            "kr.bench.Echo", {"Unary": grpc.unary_unary_rpc_method_handler(self.unary)}
        )
        self.server.add_generic_rpc_handlers((handler,))
        self.port = self.server.add_insecure_port(f"{host}:0")
        self.server.start()

    def unary(self, request: bytes, context: Any) -> bytes:
        with self._lock:
            self.calls += 1
            self.inflight += 1
            self.peers.add(context.peer())
        try:
            if self.delay_s:
                time.sleep(self.delay_s)
            if self.report_load:
                context.set_trailing_metadata((("endpoint-load-metrics-bin", self._report()),))
            return self.name.encode()
        finally:
            with self._lock:
                self.inflight -= 1

    def _report(self) -> bytes:
        """Utilization = mean in-flight calls over the last second / worker threads."""
        from kuberesolver import load_report

        now = time.monotonic()
        with self._lock:
            self._window.append((now, float(self.inflight)))
            while self._window and self._window[0][0] < now - 1.0:
                self._window.popleft()
            samples = len(self._window)
            mean_inflight = sum(v for _, v in self._window) / max(1, samples)
        span = max(0.05, now - self._window[0][0]) if self._window else 1.0
        _, report = load_report(
            cpu_utilization=min(1.0, mean_inflight / self._workers), rps=samples / span
        )
        return report


def _serve(hosts: list[str], workers: int, report_load: bool, conn: Connection) -> None:
    backends = {h: _Backend(h, workers, report_load) for h in hosts}
    conn.send({h: b.port for h, b in backends.items()})
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            break
        op = msg[0]
        if op == "stats":
            conn.send(
                {h: {"connections": len(b.peers), "calls": b.calls} for h, b in backends.items()}
            )
        elif op == "delay":
            backends[msg[1]].delay_s = msg[2]
            conn.send(True)
        elif op == "reset":
            for b in backends.values():
                with b._lock:
                    b.peers.clear()
                    b.calls = 0
            conn.send(True)
        elif op == "stop":
            break
    for b in backends.values():
        b.server.stop(None)
    conn.send(True)


class Fleet:
    """Backends on the given loopback hosts, served by a child process."""

    def __init__(self, hosts: Sequence[str], *, workers: int = 8, report_load: bool = False):
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(
            target=_serve, args=(list(hosts), workers, report_load, child), daemon=True
        )
        self._proc.start()
        self.ports: dict[str, int] = self._conn.recv()

    def _ask(self, *msg: Any) -> Any:
        self._conn.send(msg)
        return self._conn.recv()

    def stats(self) -> dict[str, dict[str, int]]:
        result: dict[str, dict[str, int]] = self._ask("stats")
        return result

    def set_delay(self, host: str, seconds: float) -> None:
        self._ask("delay", host, seconds)

    def reset(self) -> None:
        self._ask("reset")

    def close(self) -> None:
        if self._proc.is_alive():
            with contextlib.suppress(EOFError, OSError):
                self._ask("stop")
            self._proc.join(10)
        if self._proc.is_alive():
            self._proc.kill()

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def snapshot_for(
    endpoints: Iterable[tuple[str, int]],
    revision: int,
    service_config: dict[str, Any] | None = None,
) -> bytes:
    from kuberesolver.core.snapshot import Endpoint, Snapshot, TargetRef, encode

    snap = Snapshot(
        target=TargetRef("bench", "ns", "grpc", "grpc", 50051),
        revision=revision,
        endpoints=tuple(Endpoint(a, p, pod=a) for a, p in endpoints),
        service_config=service_config or {},
    )
    return encode(snap).encode()


def publish(directory: Path, endpoints: Iterable[tuple[str, int]], revision: int) -> None:
    from kuberesolver.core.atomic_writer import write_atomic

    write_atomic(directory, {"endpoints.json": snapshot_for(endpoints, revision)})


def cpu_count() -> int:
    return os.cpu_count() or 1
