"""Server-side xDS Listeners: how a drainable server is told to serve, or to drain.

grpc's xDS-enabled server (``grpc.server(..., xds=True)``) asks the xDS
control plane for a Listener named after the address it listens on, and
serves only while it holds one that matches its connections. Our in-process
ADS server answers with:

- a serving Listener: one filter chain that matches every connection, whose
  inline route lets every call through to the server's own handlers;
- a draining Listener: the same chain, restricted to a destination no
  connection has (TEST-NET-1). grpc then sends every open connection an HTTP/2
  GOAWAY and closes new ones at once, while the server itself keeps running:
  calls already sent complete, and clients take their next calls elsewhere.

grpc names the resource from the bootstrap's
``server_listener_resource_name_template``; ours is an ``xdstp:`` name under
our authority, in which grpc percent-encodes the address.
"""

from __future__ import annotations

import ipaddress
from typing import Final
from urllib.parse import quote

from envoy.config.core.v3 import address_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf import any_pb2, wrappers_pb2  # type: ignore[import-untyped]
from google.protobuf.message import Message  # type: ignore[import-untyped]

from kuberesolver.xds.resources import AUTHORITY

__all__ = [
    "SERVER_LISTENER_TEMPLATE",
    "build_server_listener",
    "listening_address",
    "server_listener_name",
]

SERVER_LISTENER_TEMPLATE: Final = (
    f"xdstp://{AUTHORITY}/envoy.config.listener.v3.Listener/grpc/server/%s"
)
"""The bootstrap's ``server_listener_resource_name_template``."""

_NOWHERE: Final = "192.0.2.1"
"""A destination no connection has (RFC 5737 TEST-NET-1): a chain that matches nothing."""

# grpc's URI path encoding keeps RFC 3986 pchar (unreserved, sub-delims, ':' and '@') and '/'.
_PATH_SAFE: Final = "/:@!$&'()*+,;="


def listening_address(host: str, port: int) -> str:
    """``host:port`` as grpc writes a listening address (IPv6 in brackets, compressed)."""
    ip = ipaddress.ip_address(host.strip("[]"))
    if ip.version == 6:
        return f"[{ip.compressed}]:{port}"
    return f"{ip}:{port}"


def server_listener_name(address: str) -> str:
    """The Listener resource grpc's xDS server asks for when it listens on ``address``."""
    return SERVER_LISTENER_TEMPLATE.replace("%s", quote(address, safe=_PATH_SAFE))


def _any(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def build_server_listener(host: str, port: int, *, serving: bool) -> listener_pb2.Listener:
    """The Listener for a server on ``host:port``: serving, or draining (matches nothing)."""
    address = listening_address(host, port)
    route_config = route_pb2.RouteConfiguration(
        name="kuberesolver-server",
        virtual_hosts=[
            route_components_pb2.VirtualHost(
                name="kuberesolver-server",
                domains=["*"],
                routes=[
                    route_components_pb2.Route(
                        match=route_components_pb2.RouteMatch(prefix=""),
                        non_forwarding_action=route_components_pb2.NonForwardingAction(),
                    )
                ],
            )
        ],
    )
    manager = hcm_pb2.HttpConnectionManager(
        stat_prefix="kuberesolver-server",
        route_config=route_config,
        http_filters=[hcm_pb2.HttpFilter(name="router", typed_config=_any(router_pb2.Router()))],
    )
    chain = listener_components_pb2.FilterChain(
        name="serving" if serving else "draining",
        filters=[listener_components_pb2.Filter(name="hcm", typed_config=_any(manager))],
    )
    if not serving:
        chain.filter_chain_match.prefix_ranges.append(
            address_pb2.CidrRange(
                address_prefix=_NOWHERE, prefix_len=wrappers_pb2.UInt32Value(value=32)
            )
        )
    ip = address.rpartition(":")[0].strip("[]")
    return listener_pb2.Listener(
        name=server_listener_name(address),
        address=address_pb2.Address(
            socket_address=address_pb2.SocketAddress(address=ip, port_value=port)
        ),
        filter_chains=[chain],
    )
