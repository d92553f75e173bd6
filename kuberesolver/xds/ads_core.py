"""The state-of-the-world ADS protocol of one stream, without I/O: both ADS servers run on it.

Per type URL a stream has a subscription (the names asked for), what the
client holds as far as we know, and the responses it has not answered yet
(by nonce). The transports (:mod:`.ads_inprocess`, :mod:`.ads_aio`) read
requests, hand them to :meth:`AdsStream.receive`, say which resources changed,
and write what :meth:`AdsStream.respond` returns.

- Listener and Cluster responses carry every subscribed resource that exists
  (a name left out is deleted at the client); ClusterLoadAssignment responses
  carry only the ones that changed for this stream (EDS is not a full-state
  type). A response goes out only when what the client should hold differs
  from what it was sent, or when the transport asks for the whole set again.
- A request answers the response whose nonce it carries. A nonce that is not
  pending (unknown, or older than one already answered) is stale: its ACK or
  NACK is ignored; its subscription still counts.
- A NACK (``error_detail`` set) refuses resources, not the whole response: the
  resources grpc's message names, else every resource of that response that
  differs from the last accepted version. Their content is remembered as
  refused and never sent to this stream again; the client keeps (and is
  served) its last accepted version until the resource changes. The other
  resources of that response count as accepted, as grpc keeps the valid
  resources of a response it refuses (gRFC A46).
- An unsubscribed name is forgotten (sent, accepted and refused).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2  # type: ignore[import-untyped]

from kuberesolver.xds.resources import CLUSTER_TYPE, LISTENER_TYPE, TYPES

__all__ = ["FULL_STATE", "MAX_PENDING", "AdsStream", "Answer", "TypeState"]

FULL_STATE = frozenset({LISTENER_TYPE, CLUSTER_TYPE})
"""The types whose every response carries the whole subscribed set."""

MAX_PENDING = 16
"""Unanswered responses remembered per type (grpc answers each one in turn)."""


@dataclass(frozen=True, slots=True)
class Answer:
    """What a request said about a response we sent: ACK or NACK, per resource."""

    type_url: str
    version: str
    """The ``version_info`` of the response it answers."""
    accepted: frozenset[str]
    refused: frozenset[str]
    message: str
    """grpc's ``error_detail`` message; ``""`` on an ACK."""

    @property
    def nack(self) -> bool:
        return bool(self.message) or bool(self.refused)


@dataclass
class TypeState:
    """One type URL of one stream."""

    names: frozenset[str] = frozenset()
    sent: dict[str, any_pb2.Any] = field(default_factory=dict)
    """What the client holds, as far as we know: the last sent (or accepted) version."""
    good: dict[str, any_pb2.Any] = field(default_factory=dict)
    """The last version the client accepted, by name."""
    refused: dict[str, bytes] = field(default_factory=dict)
    """Content the client refused, by name: never sent to it again."""
    pending: dict[int, tuple[str, dict[str, any_pb2.Any]]] = field(default_factory=dict)
    """Responses not yet answered: nonce -> (version, resources)."""
    dirty: bool = False
    full: bool = False
    """Send the full subscribed set even if it looks unchanged."""
    version: int = 0
    responses: int = 0
    acked: str = ""
    """The last version the client accepted."""


class AdsStream:
    """The protocol state of one ADS stream (not thread-safe: the transport locks)."""

    def __init__(self) -> None:
        self.types: dict[str, TypeState] = {}
        self.nacks = 0
        self._nonce = itertools.count(1)

    # -- requests ------------------------------------------------------------

    def receive(self, request: discovery_pb2.DiscoveryRequest) -> Answer | None:
        """Take a request: its subscription, and the ACK or NACK it carries (returned;
        ``None`` for a first request, a stale nonce or a type we do not serve)."""
        type_url = request.type_url
        if type_url not in TYPES:
            return None
        st = self.types.setdefault(type_url, TypeState())
        nonce = int(request.response_nonce) if request.response_nonce.isdigit() else 0
        answered = st.pending.pop(nonce, None)
        answer = None
        if answered is not None:
            for older in [n for n in st.pending if n < nonce]:
                del st.pending[older]
            version, resources = answered
            if request.HasField("error_detail"):
                answer = self._refused(type_url, st, version, resources, request)
            else:
                answer = self._accepted(type_url, st, version, resources)
        names = frozenset(request.resource_names)
        if names != st.names:
            for gone in st.names - names:
                st.sent.pop(gone, None)
                st.good.pop(gone, None)
                st.refused.pop(gone, None)
            st.names = names
            st.dirty = True
            st.full = type_url in FULL_STATE
        return answer

    def _accepted(
        self, type_url: str, st: TypeState, version: str, answered: dict[str, any_pb2.Any]
    ) -> Answer:
        if type_url in FULL_STATE:
            st.good = dict(answered)
        else:
            st.good.update(answered)
        st.acked = version
        return Answer(type_url, version, frozenset(answered), frozenset(), "")

    def _refused(
        self,
        type_url: str,
        st: TypeState,
        version: str,
        answered: dict[str, any_pb2.Any],
        request: discovery_pb2.DiscoveryRequest,
    ) -> Answer:
        message = request.error_detail.message or "refused"
        blamed = {n for n in answered if n in message} or {
            n for n, a in answered.items() if n not in st.good or st.good[n].value != a.value
        }
        for name, packed in answered.items():
            if name not in blamed:
                st.good[name] = packed
                continue
            st.refused[name] = packed.value
            if name in st.good:
                st.sent[name] = st.good[name]
            else:
                st.sent.pop(name, None)
        self.nacks += 1
        return Answer(type_url, version, frozenset(answered) - blamed, frozenset(blamed), message)

    # -- what changed ----------------------------------------------------------

    def subscribed(self, type_url: str) -> frozenset[str]:
        st = self.types.get(type_url)
        return st.names if st is not None else frozenset()

    def changed(self, type_url: str, names: Iterable[str]) -> bool:
        """``names`` of ``type_url`` changed: whether this stream subscribes to any."""
        st = self.types.get(type_url)
        if st is None or st.names.isdisjoint(names):
            return False
        st.dirty = True
        return True

    def touch(self, type_url: str, *, full: bool = False) -> bool:
        """Look at ``type_url`` again at the next :meth:`respond` (``full``: send the whole
        subscribed set even if unchanged); whether the stream subscribes to it."""
        st = self.types.get(type_url)
        if st is None:
            return False
        st.dirty = True
        st.full = st.full or full
        return True

    def dirty(self) -> list[str]:
        """The types to look at, in the order grpc needs them."""
        return [t for t in TYPES if t in self.types and self.types[t].dirty]

    def pending(self) -> int:
        return sum(len(st.pending) for st in self.types.values())

    # -- responses -------------------------------------------------------------

    def respond(
        self,
        type_url: str,
        current: Mapping[str, any_pb2.Any],
        version: str | None = None,
    ) -> discovery_pb2.DiscoveryResponse | None:
        """The response for ``type_url`` given ``current`` (the subscribed resources that
        exist, as the client may see them), or ``None`` when the client holds them.

        ``version``: the response's ``version_info``; by default a count per stream and type.
        """
        st = self.types[type_url]
        st.dirty = False
        offer: dict[str, any_pb2.Any] = {}
        for name, packed in current.items():
            if name not in st.names:
                continue
            if st.refused.get(name) == packed.value:
                if name in st.good:  # refused before: keep the last good one
                    offer[name] = st.good[name]
                continue
            st.refused.pop(name, None)  # changed since: try again
            offer[name] = packed
        if type_url in FULL_STATE:
            same = offer.keys() == st.sent.keys() and all(
                st.sent[n].value == a.value for n, a in offer.items()
            )
            if same and not st.full:
                return None
            send = offer
            st.sent = dict(offer)
        elif st.full:
            send = offer
            st.sent.update(offer)
        else:
            send = {
                n: a for n, a in offer.items() if n not in st.sent or st.sent[n].value != a.value
            }
            if not send:
                return None
            st.sent.update(send)
        st.full = False
        st.version += 1
        st.responses += 1
        version_info = str(st.version) if version is None else version
        nonce = next(self._nonce)
        st.pending[nonce] = (version_info, dict(send))
        while len(st.pending) > MAX_PENDING:  # a client that never answers
            del st.pending[next(iter(st.pending))]
        return discovery_pb2.DiscoveryResponse(
            version_info=version_info,
            type_url=type_url,
            nonce=str(nonce),
            resources=[send[n] for n in sorted(send)],
        )
