"""Calls per endpoint, read from grpc's channelz (on by default in grpc's C core).

grpc's client calls expose no peer to Python, sync or aio, but the C core's
channelz counts every call each subchannel (one endpoint's connection) carried:
grpc counts them anyway, so reading them costs nothing per call. Top channels
list the subchannels their balancer created; subchannels of identical options
are shared by channels, so callers de-duplicate them by id.

Read through the public ``grpc_channelz`` package (the ``metrics`` extra): its
servicer's methods answer in process, without a server.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

__all__ = [
    "Subchannel",
    "endpoint_key",
    "parse_address",
    "server_connections",
    "subchannel",
    "top_channels",
]


@dataclass(frozen=True, slots=True)
class Subchannel:
    """One subchannel: its endpoint (``address:port``) and its completed calls."""

    id: int
    endpoint: str
    completed: int


class _Context:
    """What the channelz servicer reports a failure through (in place of a server's)."""

    def __init__(self) -> None:
        self.code: Any = None
        self.details = ""

    def set_code(self, code: Any) -> None:
        self.code = code

    def set_details(self, details: str) -> None:
        self.details = details


def _channelz() -> tuple[Any, Any]:
    try:
        from grpc_channelz.v1 import channelz, channelz_pb2
    except ImportError as exc:  # pragma: no cover - the extra is not installed
        raise RuntimeError(
            "pick metrics need grpcio-channelz: pip install 'kuberesolver[metrics]'"
        ) from exc
    return channelz.ChannelzServicer, channelz_pb2


def top_channels() -> Iterator[tuple[str, list[int]]]:
    """Every live top channel: its target and the ids of its subchannels."""
    servicer, pb = _channelz()
    start = 0
    while True:
        context = _Context()
        page = servicer.GetTopChannels(pb.GetTopChannelsRequest(start_channel_id=start), context)
        if page is None:
            raise RuntimeError(f"channelz refused to list channels: {context.details}")
        for channel in page.channel:
            yield channel.data.target, [int(r.subchannel_id) for r in channel.subchannel_ref]
        if page.end or not page.channel:
            return
        start = int(page.channel[-1].ref.channel_id) + 1


def subchannel(subchannel_id: int) -> Subchannel | None:
    """A subchannel by id, or None once it is gone."""
    servicer, pb = _channelz()
    context = _Context()
    page = servicer.GetSubchannel(pb.GetSubchannelRequest(subchannel_id=subchannel_id), context)
    if page is None:  # not found: it was destroyed meanwhile
        return None
    data = page.subchannel.data
    return Subchannel(
        id=subchannel_id,
        endpoint=parse_address(str(data.target)),
        completed=int(data.calls_succeeded) + int(data.calls_failed),
    )


def parse_address(target: str) -> str:
    """``ipv4:10.0.0.1:8080`` -> ``10.0.0.1:8080``; ``ipv6:%5B::1%5D:8080`` -> ``[::1]:8080``."""
    scheme, sep, rest = target.partition(":")
    if not sep or scheme not in ("ipv4", "ipv6"):
        return target
    return unquote(rest).lstrip("/")


def endpoint_key(address: str, port: int) -> str:
    """A snapshot endpoint written as grpc writes the subchannel's address."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return f"{address}:{port}"
    if ip.version == 6:
        return f"[{ip.compressed}]:{port}"
    return f"{ip}:{port}"


def _socket_address(servicer: Any, pb: Any, socket_id: int) -> str | None:
    context = _Context()
    found = servicer.GetSocket(pb.GetSocketRequest(socket_id=socket_id), context)
    if found is None or not found.socket.local.HasField("tcpip_address"):
        return None
    tcpip = found.socket.local.tcpip_address
    try:
        ip = ipaddress.ip_address(bytes(tcpip.ip_address))
    except ValueError:
        return None
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return endpoint_key(str(ip), int(tcpip.port))


def server_connections(address: str) -> int | None:
    """Open connections of this process's server listening on ``address`` (``ip:port``).

    None when no server listens there (it stopped, or channelz is off).
    """
    servicer, pb = _channelz()
    start = 0
    while True:
        context = _Context()
        page = servicer.GetServers(pb.GetServersRequest(start_server_id=start), context)
        if page is None:
            return None
        for server in page.server:
            listening = {
                _socket_address(servicer, pb, int(r.socket_id)) for r in server.listen_socket
            }
            if address in listening:
                return _count_sockets(servicer, pb, int(server.ref.server_id))
        if page.end or not page.server:
            return None
        start = int(page.server[-1].ref.server_id) + 1


def _count_sockets(servicer: Any, pb: Any, server_id: int) -> int | None:
    count, start = 0, 0
    while True:
        context = _Context()
        page = servicer.GetServerSockets(
            pb.GetServerSocketsRequest(server_id=server_id, start_socket_id=start), context
        )
        if page is None:
            return None
        count += len(page.socket_ref)
        if page.end or not page.socket_ref:
            return count
        start = int(page.socket_ref[-1].socket_id) + 1
