"""A gRPC server that drains before it stops: clients leave first, so no call is cancelled.

``server.stop(grace)`` alone loses calls under load. grpc's core, as it shuts
down, cancels every call it has received but not yet handed to a handler,
and every call that arrives before the client has read the server's GOAWAY
(it sends the GOAWAY only as the shutdown begins). Clients see CANCELLED,
which no retry policy may safely repeat. A client whose endpoint list is
stale (a plain ConfigMap mount lags kubelet's refresh) keeps sending to a
terminating pod until that moment, with any channel.

:class:`DrainableServer` is grpc's own server with xDS serving modes
(``grpc.server(..., xds=True)``), whose Listener kuberesolver's in-process
xDS server provides. :meth:`DrainableServer.drain` swaps in a Listener that
matches no connection: grpc sends each open connection a GOAWAY and closes
new ones at once, *while the server keeps serving*. Calls already on the
wire are handled; clients take their next calls to other endpoints (or to
the ClusterIP fallback). Once the server has no connection left,
:meth:`~DrainableServer.stop` has nothing to cancel.

On pod termination (SIGTERM), after the usual preStop delay::

    server = kuberesolver.server.DrainableServer(futures.ThreadPoolExecutor(8))
    add_GreeterServicer_to_server(Greeter(), server)
    server.add_insecure_port(f"{os.environ['POD_IP']}:50051")
    server.start()
    signal.signal(signal.SIGTERM, lambda *_: server.drain_and_stop())
    server.wait_for_termination()

Needs the ``server`` extra (grpcio-channelz, to see the connections close).
Addresses must name an IP (``0.0.0.0:port`` and ``[::]:port`` included) and a
port other than 0: grpc names the Listener after the address it listens on, and
binds only once that Listener arrives. The asyncio server (``grpc.aio``) has the
same shutdown but no xDS mode in Python, so no drain.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import threading
import time
from collections.abc import Callable, Sequence
from concurrent import futures
from typing import Any

import grpc

from kuberesolver.client import channelz
from kuberesolver.client.channel import registry
from kuberesolver.xds.serving import build_server_listener, listening_address, server_listener_name

__all__ = ["DrainableServer"]

_POLL_S = 0.01


def _split(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"not an address with a port: {address!r}")
    if int(port) == 0:
        raise ValueError(
            f"a drainable server needs its port in advance, not 0: {address!r} "
            "(grpc's xDS server binds only once its Listener arrives)"
        )
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"a drainable server listens on an IP address, not {host!r}: grpc names its "
            "xDS Listener after the address (use the pod IP, 0.0.0.0 or [::])"
        ) from None
    return host, int(port)


def _probe_host(host: str) -> str:
    ip = ipaddress.ip_address(host)
    if ip.is_unspecified:
        return "127.0.0.1" if ip.version == 4 else "::1"
    return host


class DrainableServer(grpc.Server):  # type: ignore[misc]
    """A ``grpc.Server`` (same arguments as ``grpc.server``) with :meth:`drain`."""

    def __init__(
        self,
        thread_pool: futures.ThreadPoolExecutor,
        handlers: Sequence[grpc.GenericRpcHandler] | None = None,
        interceptors: Sequence[grpc.ServerInterceptor] | None = None,
        options: Sequence[tuple[str, Any]] | None = None,
        maximum_concurrent_rpcs: int | None = None,
        compression: grpc.Compression | None = None,
    ) -> None:
        if importlib.util.find_spec("grpc_channelz") is None:
            raise RuntimeError(
                "kuberesolver.server needs grpcio-channelz: pip install 'kuberesolver[server]'"
            )
        registry().hold_for_server()  # grpc reads the bootstrap as it makes the server
        try:
            self._server = grpc.server(
                thread_pool,
                handlers=handlers,
                interceptors=interceptors,
                options=options,
                maximum_concurrent_rpcs=maximum_concurrent_rpcs,
                compression=compression,
                xds=True,
            )
        except BaseException:
            registry().retire_server_listeners([])
            raise
        self._addresses: list[tuple[str, int]] = []
        self._plaintext: set[tuple[str, int]] = set()
        self._lock = threading.Lock()
        self._stopped = False

    @property
    def addresses(self) -> list[str]:
        """The addresses the server listens on (ports resolved), as grpc writes them."""
        return [listening_address(h, p) for h, p in self._addresses]

    def _names(self) -> list[str]:
        return [server_listener_name(a) for a in self.addresses]

    def _publish(self, serving: bool) -> int:
        return registry().publish_server_listeners(
            {
                server_listener_name(listening_address(h, p)): build_server_listener(
                    h, p, serving=serving
                )
                for h, p in self._addresses
            }
        )

    # -- grpc.Server ------------------------------------------------------

    def add_generic_rpc_handlers(
        self, generic_rpc_handlers: Sequence[grpc.GenericRpcHandler]
    ) -> None:
        self._server.add_generic_rpc_handlers(generic_rpc_handlers)

    def add_registered_method_handlers(
        self, service_name: str, method_handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        self._server.add_registered_method_handlers(service_name, method_handlers)

    def add_insecure_port(self, address: str) -> int:
        """Listen on ``address`` (an IP and a port other than 0); returns the port."""
        host, port = _split(address)
        self._server.add_insecure_port(address)  # an xDS server binds when it serves: -1
        self._addresses.append((host, port))
        self._plaintext.add((host, port))
        return port

    def add_secure_port(self, address: str, server_credentials: grpc.ServerCredentials) -> int:
        """Listen on ``address`` (an IP and a port other than 0); returns the port."""
        host, port = _split(address)
        self._server.add_secure_port(address, server_credentials)
        self._addresses.append((host, port))
        return port

    def start(self, timeout_s: float = 30.0) -> None:
        """Start; return once grpc holds the Listeners and answers on each plaintext address."""
        if not self._addresses:
            raise ValueError("add a port before starting the server")
        version = self._publish(serving=True)
        self._server.start()
        deadline = time.monotonic() + timeout_s
        if not registry().await_server_listeners(self._names(), version, timeout_s):
            raise TimeoutError(f"grpc's xDS server did not take its Listener in {timeout_s} s")
        for host, port in self._plaintext:  # a TLS port would need the client's credentials
            target = listening_address(_probe_host(host), port)
            with grpc.insecure_channel(target) as probe:
                remaining = max(0.0, deadline - time.monotonic())
                try:
                    grpc.channel_ready_future(probe).result(timeout=remaining)
                except grpc.FutureTimeoutError:
                    raise TimeoutError(f"the server on {target} is not serving") from None

    def drain(self, timeout_s: float = 30.0) -> bool:
        """Send every client a GOAWAY, refuse new connections, wait for connections to close.

        The server keeps handling what clients already sent. Returns True once
        no connection is left, False if some remain after ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        version = self._publish(serving=False)
        if not registry().await_server_listeners(self._names(), version, timeout_s):
            return False
        return self._until(lambda: self._open_connections() == 0, deadline)

    def _open_connections(self) -> int | None:
        """Connections still open on all addresses; None if channelz cannot find one."""
        counts = [channelz.server_connections(a) for a in self.addresses]
        return None if None in counts else sum(c for c in counts if c is not None)

    @staticmethod
    def _until(condition: Callable[[], bool], deadline: float) -> bool:
        while not condition():
            if time.monotonic() >= deadline:
                return False
            time.sleep(_POLL_S)
        return True

    def stop(self, grace: float | None) -> threading.Event:
        """``grpc.Server.stop``; the server's Listeners are withdrawn."""
        event: threading.Event = self._server.stop(grace)
        with self._lock:
            first, self._stopped = not self._stopped, True
        if first:
            registry().retire_server_listeners(self._names())
        return event

    def drain_and_stop(self, drain_timeout_s: float = 30.0, grace_s: float = 10.0) -> bool:
        """What SIGTERM should do: :meth:`drain`, then stop (in-flight calls get ``grace_s``).

        Returns :meth:`drain`'s result; blocks until the server has stopped.
        """
        drained = self.drain(drain_timeout_s)
        self.stop(grace_s).wait()
        return drained

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        return bool(self._server.wait_for_termination(timeout))
