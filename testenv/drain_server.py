"""The README's drainable-server recipe as a process of its own.

``python -m testenv.drain_server ADDRESS``: a :class:`kuberesolver.server.DrainableServer`
serving grpc health on ``ADDRESS``; it prints :data:`READY` once it serves, and on
SIGTERM drains (5 s at most, polling every second), stops and exits 0.
"""

from __future__ import annotations

import signal
import sys
from concurrent import futures
from typing import Final

__all__ = ["READY", "main"]

READY: Final = "kuberesolver-test-ready"
"""The line printed once the server serves (grpc's own log lines may come before it)."""


def main(address: str) -> None:
    from grpc_health.v1 import health, health_pb2_grpc

    from kuberesolver.server import DrainableServer

    server = DrainableServer(futures.ThreadPoolExecutor(max_workers=4))
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    server.add_insecure_port(address)
    server.start()
    signal.signal(signal.SIGTERM, lambda *_: server.drain_and_stop(5, 1))
    print(READY, flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main(sys.argv[1])
