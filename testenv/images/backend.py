"""The test backend image's server: answers ``/demo.Greeter/SayHello`` with its pod's name.

It also serves ``grpc.health.v1.Health`` (for kubelet's gRPC probes). The
request's bytes are ignored and the reply is the pod's name in UTF-8, so a
client with a raw codec (grpc-go's bench client too) learns which pod answered.

Environment: ``PORT`` (default 50051), ``POD_NAME`` (default the hostname),
``GRACE_S`` (default 5). On SIGTERM Health turns NOT_SERVING, then the server
stops taking calls and lets those in flight finish within ``GRACE_S``.

With ``DRAIN_S`` (seconds, default 0: off) and ``POD_IP`` it serves on that
address with ``kuberesolver.server.DrainableServer``, as the README advises:
on SIGTERM it first drains (every client gets a GOAWAY and leaves, new
connections are refused, for at most ``DRAIN_S``), then stops.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

SERVICE = "demo.Greeter"
METHOD = "SayHello"


def main() -> None:
    port = int(os.environ.get("PORT", "50051"))
    pod = os.environ.get("POD_NAME") or socket.gethostname()
    grace_s = float(os.environ.get("GRACE_S", "5"))
    reply = pod.encode()

    def say_hello(request: bytes, context: grpc.ServicerContext) -> bytes:
        return reply

    drain_s = float(os.environ.get("DRAIN_S", "0"))
    executor = futures.ThreadPoolExecutor(max_workers=8)
    drainable = None
    if drain_s > 0:
        from kuberesolver.server import DrainableServer  # only the draining backend has it

        drainable = DrainableServer(executor)
        server: grpc.Server = drainable
        address = f"{os.environ['POD_IP']}:{port}"
    else:
        server = grpc.server(executor)
        address = f"0.0.0.0:{port}"
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                SERVICE, {METHOD: grpc.unary_unary_rpc_method_handler(say_hello)}
            ),
        )
    )
    checks = health.HealthServicer()
    checks.set("", health_pb2.HealthCheckResponse.SERVING)
    checks.set(SERVICE, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(checks, server)
    server.add_insecure_port(address)
    server.start()
    print(json.dumps({"event": "serving", "pod": pod, "port": port}), flush=True)

    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    stopping.wait()
    checks.enter_graceful_shutdown()
    if drainable is not None:
        drainable.drain_and_stop(drain_timeout_s=drain_s, grace_s=grace_s)
    else:
        server.stop(grace_s).wait()
    print(json.dumps({"event": "stopped", "pod": pod}), flush=True)


if __name__ == "__main__":
    main()
