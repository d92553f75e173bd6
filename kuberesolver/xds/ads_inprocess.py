"""A tiny state-of-the-world ADS server that feeds grpc's own xDS client, in process.

It listens on a private unix socket (a 0700 temporary directory) and serves the
resources :mod:`kuberesolver.xds.resources` builds. grpc (since 1.62) keeps
one xDS client per channel target, so there is one ADS stream per distinct
kuberesolver target (channel spec) in use; each costs two threads here.

The protocol of each stream is :class:`~.ads_core.AdsStream`'s. Versions are
counted per type over the whole server, so :meth:`AdsServer.publish` can say
which version to await; a publish that changes a type sends every stream
subscribed to that type the whole subscribed set again, with the new version.
A NACK refuses only the resources it blames: they are logged as an error and
reported to :attr:`AdsServer.on_nack`, the rest of that response to
:attr:`AdsServer.on_ack`; grpc keeps the last version it accepted of the
refused ones, and they are not sent again until they change.

A removed resource is kept until no stream subscribes to it any more: grpc
unsubscribes when its last channel of a target closes, and deleting first
would make grpc's xDS client log that the resource does not exist.
"""

from __future__ import annotations

import logging
import os
import queue
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import any_pb2  # type: ignore[import-untyped]
from google.protobuf.message import Message  # type: ignore[import-untyped]

from kuberesolver.xds.ads_core import AdsStream
from kuberesolver.xds.resources import CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE

__all__ = ["AdsServer"]

log = logging.getLogger("kuberesolver.xds")

_TYPES = (LISTENER_TYPE, CLUSTER_TYPE, ENDPOINT_TYPE)
_MAX_STREAMS = 1024
_MAX_UNIX_PATH = 100  # sun_path holds 108 bytes on Linux, 104 on macOS


class DaemonExecutor(futures.Executor):
    """Each task on a daemon thread of its own, which interpreter exit does not wait for.

    ``ThreadPoolExecutor``'s workers are joined at exit before ``atexit`` runs: an
    ADS stream held open by a channel the application never closed (a module-level
    one) kept the process from exiting, and the ``atexit`` hook that stops the
    server never ran.
    """

    def __init__(self, name: str) -> None:
        self._name = name

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> futures.Future[Any]:
        future: futures.Future[Any] = futures.Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(result)

        threading.Thread(target=run, name=self._name, daemon=True).start()
        return future


@dataclass(eq=False)
class _Stream:
    outbox: queue.SimpleQueue[discovery_pb2.DiscoveryResponse | None] = field(
        default_factory=queue.SimpleQueue
    )
    core: AdsStream = field(default_factory=AdsStream)


class AdsServer:
    """Serves ``{type_url: {name: resource}}`` over ADS; :meth:`publish` pushes changes."""

    def __init__(self, socket_dir: str | None = None) -> None:
        self._lock = threading.Lock()
        self._resources: dict[str, dict[str, any_pb2.Any]] = {t: {} for t in _TYPES}
        self._versions: dict[str, int] = dict.fromkeys(_TYPES, 0)
        self._streams: set[_Stream] = set()
        self.on_idle: Callable[[], None] | None = None
        """Called (on a stream's thread) when the last ADS stream has ended."""
        self.on_ack: Callable[[str, frozenset[str], int], None] | None = None
        """Called (on a stream's thread) with the type, the resource names and the version
        when grpc's xDS client accepts a response."""
        self.on_nack: Callable[[str, frozenset[str], int, str], None] | None = None
        """Called (on a stream's thread) with the type, the resource names, the version
        refused and grpc's message when grpc's xDS client refuses a response."""
        self._retired: dict[str, set[str]] = {t: set() for t in _TYPES}
        self._own_dir = socket_dir is None
        self._dir: str | None = None
        self.socket_path: str | None = None
        self._port = 0
        try:
            self._dir = socket_dir or tempfile.mkdtemp(prefix="kuberesolver-")
            os.chmod(self._dir, 0o700)
            path = os.path.join(self._dir, "ads.sock")
            if len(os.fsencode(path)) > _MAX_UNIX_PATH:
                raise OSError(f"socket path too long: {path}")
            self.socket_path = path
        except OSError as exc:  # no writable temporary directory: loopback TCP instead
            log.info("no private unix socket for the xDS server (%s); using 127.0.0.1", exc)
            if self._own_dir and self._dir is not None:
                shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        self._server: grpc.Server | None = None

    @property
    def uri(self) -> str:
        """The target grpc's xDS client dials: ``unix:<path>``, else ``127.0.0.1:<port>``.

        With TCP the port is known once :meth:`start` ran; it stays the same
        across restarts, since grpc's xDS client keeps the bootstrap it read.
        """
        if self.socket_path is not None:
            return f"unix:{self.socket_path}"
        return f"127.0.0.1:{self._port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def stream_count(self) -> int:
        """Open ADS streams: grpc keeps one per xDS client while it has channels."""
        with self._lock:
            return len(self._streams)

    def start(self) -> None:
        if self._server is not None:
            return
        if self.socket_path is not None and os.path.exists(self.socket_path):
            os.unlink(self.socket_path)
        server = grpc.server(
            # grpc (>= 1.62) keeps one xDS client, so one ADS stream, per channel
            # target; each stream holds a thread for its life.
            DaemonExecutor("kuberesolver-ads"),
            maximum_concurrent_rpcs=_MAX_STREAMS,
            options=[("grpc.so_reuseport", 0)],
        )
        handler = _Handler(self)
        ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(handler, server)
        port = server.add_insecure_port(self.uri)
        if self.socket_path is None:
            self._port = port
        server.start()
        self._server = server
        log.debug("ADS server listening on %s", self.uri)

    def stop(self, grace_s: float | None = None) -> None:
        """Stop serving. Idempotent; :meth:`start` may be called again afterwards."""
        server, self._server = self._server, None
        with self._lock:
            streams = list(self._streams)
        for stream in streams:
            stream.outbox.put(None)
        if server is not None:
            server.stop(grace_s).wait()

    def close(self) -> None:
        """Stop and remove the socket directory."""
        self.stop()
        if self._own_dir and self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)

    # -- resources -------------------------------------------------------

    def publish(self, resources: Mapping[str, Mapping[str, Message]]) -> dict[str, int]:
        """Add or replace resources and push every type that changed.

        Returns the version of each type given: an ACK of that version (or a
        later one) means grpc holds these resources.
        """
        changed: list[str] = []
        with self._lock:
            for type_url, by_name in resources.items():
                table = self._resources[type_url]
                self._retired[type_url].difference_update(by_name)
                dirty = False
                for name, message in by_name.items():
                    packed = any_pb2.Any()
                    packed.Pack(message)
                    old = table.get(name)
                    if old is None or old.value != packed.value:
                        table[name] = packed
                        dirty = True
                if dirty:
                    self._versions[type_url] += 1
                    changed.append(type_url)
            self._push_locked(changed)
            return {type_url: self._versions[type_url] for type_url in resources}

    def remove(self, names: Mapping[str, Iterable[str]]) -> None:
        """Delete resources by ``{type_url: names}`` once no stream subscribes to them."""
        with self._lock:
            for type_url, to_drop in names.items():
                table = self._resources[type_url]
                self._retired[type_url].update(n for n in to_drop if n in table)
            self._purge_locked()

    def _purge_locked(self) -> None:
        """Drop the retired resources that no stream subscribes to (nobody needs a push)."""
        for type_url, retired in self._retired.items():
            if not retired:
                continue
            wanted: set[str] = set()
            for stream in self._streams:
                wanted.update(stream.core.subscribed(type_url))
            table = self._resources[type_url]
            for name in retired - wanted:
                table.pop(name, None)
                retired.discard(name)

    # -- streams ---------------------------------------------------------

    def _push_locked(self, type_urls: list[str]) -> None:
        for stream in self._streams:
            for type_url in type_urls:
                stream.core.touch(type_url, full=True)
            self._flush_locked(stream)

    def _flush_locked(self, stream: _Stream) -> None:
        for type_url in stream.core.dirty():
            table = self._resources[type_url]
            current = {n: table[n] for n in stream.core.subscribed(type_url) if n in table}
            response = stream.core.respond(type_url, current, str(self._versions[type_url]))
            if response is not None:
                stream.outbox.put(response)

    def _on_request(self, stream: _Stream, request: discovery_pb2.DiscoveryRequest) -> None:
        if request.type_url not in self._resources:
            log.debug("ignoring a request for unknown type %s", request.type_url)
            return
        with self._lock:
            answer = stream.core.receive(request)
            self._purge_locked()
            self._flush_locked(stream)
        if answer is None:
            return
        version = int(answer.version) if answer.version.isdigit() else -1
        if answer.nack:
            log.error(
                "grpc's xDS client refused %s version %d (%s): %s",
                answer.type_url.rsplit(".", 1)[-1],
                version,
                ", ".join(sorted(answer.refused)) or "-",
                answer.message,
            )
            if self.on_nack is not None:
                self.on_nack(answer.type_url, answer.refused, version, answer.message)
        if answer.accepted and self.on_ack is not None:
            self.on_ack(answer.type_url, answer.accepted, version)

    def _serve_stream(
        self, requests: Iterator[discovery_pb2.DiscoveryRequest], context: Any
    ) -> Iterator[discovery_pb2.DiscoveryResponse]:
        stream = _Stream()
        with self._lock:
            self._streams.add(stream)

        def read() -> None:
            try:
                for request in requests:
                    self._on_request(stream, request)
            except Exception as exc:  # the stream ended or broke: close our side
                log.debug("ADS stream ended: %s", exc)
            finally:
                stream.outbox.put(None)

        reader = threading.Thread(target=read, name="kuberesolver-ads-reader", daemon=True)
        context.add_callback(lambda: stream.outbox.put(None))
        reader.start()
        try:
            while True:
                item = stream.outbox.get()
                if item is None:
                    return
                yield item
        finally:
            with self._lock:
                self._streams.discard(stream)
                self._purge_locked()
                idle = not self._streams
            if idle and self.on_idle is not None:
                self.on_idle()


class _Handler(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):  # type: ignore[misc]
    def __init__(self, server: AdsServer) -> None:
        self._server = server

    def StreamAggregatedResources(
        self, request_iterator: Iterator[discovery_pb2.DiscoveryRequest], context: Any
    ) -> Iterator[discovery_pb2.DiscoveryResponse]:
        return self._server._serve_stream(request_iterator, context)

    def DeltaAggregatedResources(
        self, request_iterator: Iterator[Any], context: Any
    ) -> Iterator[Any]:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "kuberesolver serves state-of-the-world ADS")
        return iter(())
