"""Calls per endpoint, read from grpc's channelz (on by default in grpc's C core).

grpc's client calls expose no peer to Python, sync or aio, but the C core's
channelz counts every call each subchannel (one endpoint's connection) carried:
grpc counts them anyway, so reading them costs nothing per call. Top channels
list the subchannels their balancer created; subchannels of identical options
are shared by channels, so callers de-duplicate them by id.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from grpc._cython import cygrpc

__all__ = ["Subchannel", "endpoint_key", "parse_address", "subchannel", "top_channels"]


@dataclass(frozen=True, slots=True)
class Subchannel:
    """One subchannel: its endpoint (``address:port``) and its completed calls."""

    id: int
    endpoint: str
    completed: int


def _int(data: dict[str, Any], key: str) -> int:
    return int(data.get(key) or 0)  # proto3 JSON: int64 as a string, absent when 0


def top_channels() -> Iterator[tuple[str, list[int]]]:
    """Every live top channel: its target and the ids of its subchannels."""
    start = 0
    while True:
        page = json.loads(cygrpc.channelz_get_top_channels(start))
        channels = page.get("channel") or []
        for channel in channels:
            refs = channel.get("subchannelRef") or []
            yield channel["data"]["target"], [int(r["subchannelId"]) for r in refs]
        if page.get("end", False) or not channels:
            return
        start = int(channels[-1]["ref"]["channelId"]) + 1


def subchannel(subchannel_id: int) -> Subchannel | None:
    """A subchannel by id, or None once it is gone."""
    try:
        raw = cygrpc.channelz_get_subchannel(subchannel_id)
    except ValueError:  # not found: it was destroyed meanwhile
        return None
    data = json.loads(raw).get("subchannel", {}).get("data", {})
    return Subchannel(
        id=subchannel_id,
        endpoint=parse_address(str(data.get("target", ""))),
        completed=_int(data, "callsSucceeded") + _int(data, "callsFailed"),
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
