"""Real gRPC backends for the demo and the end-to-end tests: each answers with its pod name."""

from __future__ import annotations

from concurrent import futures

import grpc

METHOD = "/demo.Greeter/SayHello"


class Backend:
    """A gRPC server on ``ip:port`` whose SayHello returns ``name`` (raw bytes, no codegen)."""

    def __init__(self, name: str, ip: str, port: int) -> None:
        self.name = name
        self.address = f"{ip}:{port}"
        self.calls = 0
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        handler = grpc.method_handlers_generic_handler(
            "demo.Greeter", {"SayHello": grpc.unary_unary_rpc_method_handler(self._say_hello)}
        )
        self._server.add_generic_rpc_handlers((handler,))
        if self._server.add_insecure_port(self.address) == 0:
            raise OSError(f"cannot listen on {self.address}")
        self._server.start()

    def _say_hello(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self.calls += 1
        return self.name.encode()

    def stop(self) -> None:
        self._server.stop(grace=None).wait()
