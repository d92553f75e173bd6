"""A state-of-the-world ADS server on grpc.aio, serving an :class:`~.store.XdsStore`.

grpc's xDS clients (grpcio, grpc-go, grpc-java) open one ADS stream per
channel target (grpc >= 1.62 / grpc-go >= 1.66) and subscribe, per type, to
the names they need: the Listener of ``xds://<authority>/<name>``, then the
Cluster its route names, then the ClusterLoadAssignment the Cluster names.

What a stream is sent (state of the world, as the xDS protocol allows it):

- Listener and Cluster responses carry every subscribed resource that exists
  (a name left out is deleted at the client), and go out only when that set
  changes for this stream;
- ClusterLoadAssignment responses carry only the CLAs that changed for this
  stream (EDS is not a full-state type);
- a store change reaches only the streams subscribed to a changed name.

The protocol of each stream (subscriptions, nonces, what to send, ACK and NACK
per resource) is :class:`~.ads_core.AdsStream`'s. A NACK is logged and counted
(``kuberesolver_xds_nacks_total``).

Wildcard subscriptions (an empty name list) get nothing: every resource must
be asked for by name. Delta xDS is not offered (UNIMPLEMENTED).

With an :class:`Authorizer`, a stream sees only the targets its
client may see: the ``authorization: Bearer <token>`` its grpc sends on the
stream (gRFC A97 call credentials) is asked about each target it subscribes
to, and a target it may not see is absent (left out of the full state, never
sent). Nothing of a type is sent while a decision for one of its subscribed
targets is pending (the client keeps what it has). Decisions are asked again
every ``recheck_s`` (the authorizer caches them), and the stream ends when
its token expires (its ``exp``), so the client comes back with its renewed token.

Method timeouts (``method_timeouts``): with ``auto`` (the default) a stream
whose client applies a route's ``max_stream_duration`` correctly is served the
Listeners that carry the service config's ``methodConfig`` timeouts, and the
others the plain ones; the client is known by the ``user_agent_name`` of the
node it sends first (:func:`applies_stream_duration`). ``all`` and ``none``
serve every stream the one or the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import grpc
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from kuberesolver.xds.ads_core import AdsStream, Answer
from kuberesolver.xds.auth import token_expiry
from kuberesolver.xds.metrics import XdsMetrics, short_type
from kuberesolver.xds.resources import TYPES
from kuberesolver.xds.settings import METHOD_TIMEOUTS
from kuberesolver.xds.store import Changes, Key, XdsStore, key_of

__all__ = [
    "AdsServer",
    "Authorizer",
    "StreamInfo",
    "applies_stream_duration",
    "bearer_token",
    "server_credentials",
]

log = logging.getLogger("kuberesolver.xds_server")

_OPTIONS = [
    ("grpc.so_reuseport", 0),
    # ADS streams live for hours: ping idle clients so a vanished one is noticed
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.keepalive_permit_without_calls", 1),
    # and let clients ping us as often as grpc's own xDS clients may
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
]


def applies_stream_duration(user_agent_name: str, user_agent_version: str = "") -> bool:
    """Whether the xDS client that sent this node applies a route's ``max_stream_duration``
    as the deadline it should be.

    grpc's C core (grpcio, C++, Ruby, PHP; it sends ``gRPC C-core <platform> ...``)
    ends such calls 1-2 s early in every version so far (grpc/grpc#34547: its
    timestamps count from a whole second, the call's start from the exact clock),
    so it is not served them. Every other named client is: grpc-go (``gRPC Go``)
    and grpc-java (``gRPC Java``) apply them correctly, and a client that does
    not implement them ignores them. A node without a name is not (the safe side:
    a call that is not cut short still ends at the deadline its caller set).
    ``user_agent_version`` is for the C core release that fixes it (none yet).
    """
    name = user_agent_name.strip()
    return bool(name) and not name.startswith("gRPC C-core")


class Authorizer(Protocol):
    """Decides whether the holder of ``token`` may see target ``key`` (``""``: no token)."""

    async def allowed(self, token: str, key: Key) -> bool: ...


def bearer_token(metadata: Sequence[tuple[str, str | bytes]] | None) -> str:
    """The token of an ``authorization: Bearer <token>`` header; ``""`` without one."""
    for name, value in metadata or ():
        if name.lower() == "authorization" and isinstance(value, str):
            scheme, _, token = value.strip().partition(" ")
            if scheme.lower() == "bearer":
                return token.strip()
    return ""


def server_credentials(
    cert_file: str | Path, key_file: str | Path, client_ca_file: str | Path | None = None
) -> grpc.ServerCredentials:
    """TLS server credentials from PEM files; with ``client_ca_file``, clients must present
    a certificate it signed (mutual TLS)."""
    cert = Path(cert_file).read_bytes()
    key = Path(key_file).read_bytes()
    ca = Path(client_ca_file).read_bytes() if client_ca_file is not None else None
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=ca, require_client_auth=ca is not None
    )


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """One open stream, for tests and debugging. Types are short names (``Listener``)."""

    peer: str
    node_id: str
    zone: str
    """The client's zone (its bootstrap's ``node.locality.zone``): its own zone comes first."""
    user_agent: str
    """The node's ``user_agent_name`` and ``user_agent_version`` (``gRPC Go 1.83.2``)."""
    timeouts: bool
    """Whether it is served the method timeouts (``max_stream_duration``)."""
    subscribed: dict[str, frozenset[str]]
    responses: dict[str, int]
    acked: dict[str, str]
    """The last version the client accepted, by type."""
    nacks: int


@dataclass(eq=False)
class _Stream:
    peer: str
    node_id: str = ""
    zone: str = ""
    user_agent: str = ""
    timeouts: bool = False
    core: AdsStream = field(default_factory=AdsStream)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    closed: bool = False
    token: str = ""
    decisions: dict[Key, bool] = field(default_factory=dict)
    """Which targets this client may see (with an authorizer); absent: not decided yet."""
    checking: set[asyncio.Task[None]] = field(default_factory=set)
    pending_keys: set[Key] = field(default_factory=set)
    timers: dict[str, asyncio.TimerHandle] = field(default_factory=dict)
    """``expiry`` (the token's) and ``recheck``."""


class AdsServer:
    """Serves ``store`` over ADS on ``address``; :meth:`start` then :meth:`stop`, in one loop."""

    def __init__(
        self,
        store: XdsStore,
        *,
        metrics: XdsMetrics | None = None,
        authorizer: Authorizer | None = None,
        recheck_s: float = 30.0,
        method_timeouts: str = "auto",
    ) -> None:
        if method_timeouts not in METHOD_TIMEOUTS:
            raise ValueError(
                f"method_timeouts must be one of {METHOD_TIMEOUTS}: {method_timeouts!r}"
            )
        self.store = store
        self.method_timeouts = method_timeouts
        """``auto``: to the clients :func:`applies_stream_duration` names; ``all``; ``none``."""
        self.metrics = metrics if metrics is not None else XdsMetrics()
        self.authorizer = authorizer
        """Set before :meth:`start`; ``None``: every client sees every target."""
        self.recheck_s = recheck_s
        self._released = asyncio.Event()
        self._released.set()
        self.port = 0
        self._lock = threading.Lock()  # guards _streams and their state: streams() reads it
        self._streams: set[_Stream] = set()
        self._server: grpc.aio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._unlisten: Any = None

    async def start(
        self, address: str = "127.0.0.1:0", credentials: grpc.ServerCredentials | None = None
    ) -> int:
        """Listen on ``address`` (TLS with ``credentials``, else insecure); returns the port."""
        if self._server is not None:
            return self.port
        self._loop = asyncio.get_running_loop()
        server = grpc.aio.server(options=_OPTIONS)
        ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(_Servicer(self), server)
        if credentials is None:
            self.port = server.add_insecure_port(address)
        else:
            self.port = server.add_secure_port(address, credentials)
        await server.start()
        self._server = server
        self._unlisten = self.store.listen(self._on_change)
        log.info("xDS server of authority %s on port %d", self.store.authority, self.port)
        return self.port

    def hold(self) -> None:
        """Answer no stream until :meth:`release` (the host's view is not complete yet:
        an answer now would tell clients that their resources do not exist)."""
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    @property
    def held(self) -> bool:
        return not self._released.is_set()

    @property
    def serving(self) -> bool:
        """Listening, and answering streams (not held)."""
        return self._server is not None and not self.held

    async def wait_released(self) -> None:
        await self._released.wait()

    async def stop(self, grace_s: float | None = None) -> None:
        """Stop serving: open streams end (their clients reconnect elsewhere)."""
        server, self._server = self._server, None
        if self._unlisten is not None:
            self._unlisten()
            self._unlisten = None
        with self._lock:
            streams = list(self._streams)
        for stream in streams:
            stream.closed = True
            stream.wake.set()
        self._released.set()
        if server is not None:
            await server.stop(grace_s)

    def streams(self) -> list[StreamInfo]:
        """The open streams (callable from any thread)."""
        with self._lock:
            return [
                StreamInfo(
                    peer=s.peer,
                    node_id=s.node_id,
                    zone=s.zone,
                    user_agent=s.user_agent,
                    timeouts=s.timeouts,
                    subscribed={short_type(t): st.names for t, st in s.core.types.items()},
                    responses={short_type(t): st.responses for t, st in s.core.types.items()},
                    acked={short_type(t): st.acked for t, st in s.core.types.items()},
                    nacks=s.core.nacks,
                )
                for s in self._streams
            ]

    def pending(self) -> int:
        """Responses sent and not yet answered, over every stream and type."""
        with self._lock:
            return sum(s.core.pending() for s in self._streams)

    # -- store changes -----------------------------------------------------

    def _on_change(self, changes: Changes) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nothing to serve
            loop.call_soon_threadsafe(self._dispatch, changes)

    def _dispatch(self, changes: Changes) -> None:
        changed_keys = {k for names in changes.values() for k in map(key_of, names) if k}
        with self._lock:
            for stream in self._streams:
                for key in changed_keys:  # a no for a target that was not there yet: ask again
                    if stream.decisions.get(key) is False:
                        del stream.decisions[key]
                woken = [stream.core.changed(t, names) for t, names in changes.items()]
                if any(woken):
                    stream.wake.set()

    # -- one stream --------------------------------------------------------

    async def serve(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        stream = _Stream(peer=context.peer(), timeouts=self.method_timeouts == "all")
        if self.authorizer is not None:
            self._guard(stream, context)
        with self._lock:
            self._streams.add(stream)
        self.metrics.streams.inc()
        reader = asyncio.create_task(self._read(stream, context))
        try:
            while True:
                await stream.wake.wait()
                if not self._released.is_set():
                    await self._released.wait()
                stream.wake.clear()
                if stream.closed:
                    break
                with self._lock:
                    responses = list(self._responses(stream))
                for response in responses:
                    if stream.closed:
                        break
                    await context.write(response)
                    self.metrics.responses.labels(short_type(response.type_url)).inc()
        finally:
            reader.cancel()
            for timer in stream.timers.values():
                timer.cancel()
            for task in list(stream.checking):
                task.cancel()
            with self._lock:
                self._streams.discard(stream)
            self.metrics.streams.dec()

    # -- who may see what (with an authorizer) -------------------------------

    def _guard(self, stream: _Stream, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        loop = asyncio.get_running_loop()
        stream.token = bearer_token(context.invocation_metadata())
        expires = token_expiry(stream.token) if stream.token else None
        left = expires - time.time() if expires is not None else 0.0
        if left > 0:  # then the client must come back with its renewed token
            stream.timers["expiry"] = loop.call_later(left, self._expired, stream)
        stream.timers["recheck"] = loop.call_later(self.recheck_s, self._recheck, stream)

    def _expired(self, stream: _Stream) -> None:
        log.info("xDS client %s: its token expired; ending the stream", stream.peer)
        stream.closed = True
        stream.wake.set()

    def _recheck(self, stream: _Stream) -> None:
        with self._lock:
            stream.decisions.clear()
            for type_url in TYPES:
                stream.core.touch(type_url)
        stream.wake.set()
        loop = asyncio.get_running_loop()
        stream.timers["recheck"] = loop.call_later(self.recheck_s, self._recheck, stream)

    def _undecided(self, stream: _Stream, names: frozenset[str]) -> bool:
        """Start the checks this stream still needs for ``names``; whether any is pending."""
        waiting = False
        for key in {k for k in map(key_of, names) if k is not None}:
            if key in stream.decisions:
                continue
            waiting = True
            if key not in stream.pending_keys:
                stream.pending_keys.add(key)
                task = asyncio.get_running_loop().create_task(self._check(stream, key))
                stream.checking.add(task)
                task.add_done_callback(stream.checking.discard)
        return waiting

    async def _check(self, stream: _Stream, key: Key) -> None:
        assert self.authorizer is not None
        try:
            allowed = await self.authorizer.allowed(stream.token, key)
        except Exception:  # a failed check is a no, retried at the next recheck
            log.exception("xDS client %s: checking %s/%s failed", stream.peer, *key)
            allowed = False
        if not allowed:
            log.info("xDS client %s (node %r) may not see %s/%s", stream.peer, stream.node_id, *key)
        with self._lock:
            stream.pending_keys.discard(key)
            stream.decisions[key] = allowed
            for type_url in TYPES:
                if any(key_of(n) == key for n in stream.core.subscribed(type_url)):
                    stream.core.touch(type_url)
        stream.wake.set()

    async def _read(self, stream: _Stream, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        try:
            while True:
                request = await context.read()
                if request is grpc.aio.EOF:
                    break
                with self._lock:
                    self._on_request(stream, request)
        except (grpc.RpcError, asyncio.CancelledError):
            pass
        except Exception:  # a bug of ours: end the stream, the client reconnects
            log.exception("ADS stream from %s failed", stream.peer)
        finally:
            stream.closed = True
            stream.wake.set()

    def _on_request(self, stream: _Stream, request: discovery_pb2.DiscoveryRequest) -> None:
        if request.HasField("node"):  # grpc sends it on the first request only
            stream.node_id = request.node.id
            stream.zone = request.node.locality.zone
            agent, version = request.node.user_agent_name, request.node.user_agent_version
            stream.user_agent = f"{agent} {version}".strip()
            if self.method_timeouts == "auto":
                stream.timeouts = applies_stream_duration(agent, version)
        if request.type_url not in TYPES:
            log.debug("%s asked for unknown type %s", stream.peer, request.type_url)
            return
        answer = stream.core.receive(request)
        if answer is not None:
            self._answered(stream, answer)
        if stream.core.dirty():
            stream.wake.set()

    def _answered(self, stream: _Stream, answer: Answer) -> None:
        kind = short_type(answer.type_url)
        if not answer.nack:
            self.metrics.acks.labels(kind).inc()
            return
        self.metrics.nacks.labels(kind).inc()
        log.warning(
            "xDS client %s (node %r) refused %s version %s (%s); the rest of it stands: %s",
            stream.peer,
            stream.node_id,
            kind,
            answer.version,
            ", ".join(sorted(answer.refused)) or "-",
            answer.message,
        )

    def _responses(self, stream: _Stream) -> Iterator[discovery_pb2.DiscoveryResponse]:
        for type_url in stream.core.dirty():
            names = stream.core.subscribed(type_url)
            if self.authorizer is not None and self._undecided(stream, names):
                continue  # answered once every decision is in (the type stays dirty)
            current = self.store.resources(
                type_url, sorted(names), zone=stream.zone, timeouts=stream.timeouts
            )
            if self.authorizer is not None:
                current = {n: a for n, a in current.items() if _allowed(stream, n)}
            response = stream.core.respond(type_url, current)
            if response is not None:
                yield response


def _allowed(stream: _Stream, name: str) -> bool:
    key = key_of(name)
    return key is not None and stream.decisions.get(key, False)


class _Servicer(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):  # type: ignore[misc]
    def __init__(self, server: AdsServer) -> None:
        self._server = server

    async def StreamAggregatedResources(
        self, request_iterator: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        await self._server.serve(context)

    async def DeltaAggregatedResources(
        self, request_iterator: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED, "kuberesolver serves state-of-the-world ADS only"
        )
