"""The snapshot contract: ``endpoints.json``, written by the operator, read by clients.

This module is the single definition of the format. The operator builds a
:class:`Snapshot` and calls :func:`encode`; a client calls :func:`decode` (or
:func:`load`) and gets the same typed value back, or a :class:`SnapshotError`
naming the file and the problem.

The JSON document (format version 1)::

    {
      "version": 1,
      "target": {"service": "greeter", "namespace": "backend",
                 "port": "grpc", "portName": "grpc", "portNumber": 8080},
      "serverName": "greeter.backend",
      "revision": 7,
      "endpoints": [
        {"address": "10.0.0.7", "port": 50051, "ready": true, "serving": true,
         "terminating": false, "zone": "zone-a", "node": "node-1",
         "pod": "greeter-5d9c7-abcde"}
      ],
      "serviceConfig": {"loadBalancingConfig": [{"round_robin": {}}]},
      "clusterIPs": ["10.96.0.10"],
      "outlierDetection": {"interval": "1s", "baseEjectionTime": "30s",
                           "maxEjectionTime": "300s", "maxEjectionPercent": 50,
                           "failurePercentageEjection": {"threshold": 85,
                             "enforcementPercentage": 100, "minimumHosts": 2,
                             "requestVolume": 10}}
    }

- ``target.port`` is what the GrpcTarget asked for ("" for the first port);
  ``portName`` and ``portNumber`` are the Service port it resolved to.
- ``endpoints[].port`` is the resolved container port (the targetPort).
- ``revision`` is monotonic and changes exactly when ``endpoints`` change.
- ``clusterIPs`` (optional, absent for a headless Service) are the Service's
  virtual IPs; with ``target.portNumber`` they are the last-resort route
  through kube-proxy while the endpoint list is stale.
- ``outlierDetection`` (optional, absent when off) is gRFC A50's JSON form
  (see :mod:`kuberesolver.core.service_config`); clients eject backends that fail.
- Unknown keys are ignored, so minor additions stay compatible; an unknown
  ``version`` is refused.

Only the standard library is used here: both sides import it.
"""

from __future__ import annotations

import ipaddress
import json
import os
import reprlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, NotRequired, TypedDict

from kuberesolver.core.service_config import OutlierDetection, outlier_detection

__all__ = [
    "ENDPOINTS_KEY",
    "FORMAT_VERSION",
    "SERVICE_CONFIG_KEY",
    "EncodedEndpoints",
    "Endpoint",
    "Snapshot",
    "SnapshotError",
    "TargetRef",
    "decode",
    "encode",
    "load",
]

FORMAT_VERSION: Final = 1
"""The major version of the format that this code reads and writes."""

ENDPOINTS_KEY: Final = "endpoints.json"
"""The ConfigMap key (and file name) that holds the snapshot."""

SERVICE_CONFIG_KEY: Final = "service-config.json"
"""The ConfigMap key that holds the gRPC service config on its own."""


class SnapshotError(ValueError):
    """A snapshot that cannot be used: corrupt, truncated, invalid or of an unknown version."""

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(f"{source}: {problem}")
        self.source = source
        self.problem = problem


class EndpointFields(TypedDict):
    """What an endpoint says of itself, port aside (also what is kept of an EndpointSlice's)."""

    address: str
    ready: bool
    serving: bool
    terminating: bool
    zone: str | None
    node: str | None
    pod: str | None


class EndpointDict(EndpointFields):
    """One endpoint as it stands in the JSON document."""

    port: int


class TargetDict(TypedDict):
    """The ``target`` object of the JSON document."""

    service: str
    namespace: str
    port: str | int
    portName: str
    portNumber: int


class SnapshotDict(TypedDict):
    """The whole JSON document."""

    version: int
    target: TargetDict
    serverName: str
    revision: int
    endpoints: list[EndpointDict]
    serviceConfig: dict[str, Any]
    clusterIPs: NotRequired[list[str]]
    outlierDetection: NotRequired[dict[str, Any]]


@dataclass(frozen=True, slots=True, order=True)
class Endpoint:
    """One backend address, with the conditions Kubernetes reports for it."""

    address: str
    port: int
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    zone: str | None = None
    node: str | None = None
    pod: str | None = None

    @property
    def hostport(self) -> str:
        """``address:port``, with IPv6 addresses in brackets."""
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"

    def to_dict(self) -> EndpointDict:
        return {
            "address": self.address,
            "port": self.port,
            "ready": self.ready,
            "serving": self.serving,
            "terminating": self.terminating,
            "zone": self.zone,
            "node": self.node,
            "pod": self.pod,
        }


@dataclass(frozen=True, slots=True)
class TargetRef:
    """Which Service port a snapshot describes."""

    service: str
    namespace: str
    port: str | int = ""
    port_name: str = ""
    port_number: int = 0

    @property
    def server_name(self) -> str:
        """``service.namespace``: the default TLS name and ``:authority``."""
        return f"{self.service}.{self.namespace}"

    def matches_port(self, port: str | int | None) -> bool:
        """Whether a port asked for by a client (name or number) is this one."""
        if port is None or port == "":
            return True
        candidates = {str(self.port), self.port_name, str(self.port_number)} - {"", "0"}
        return not candidates or str(port) in candidates

    def to_dict(self) -> TargetDict:
        return {
            "service": self.service,
            "namespace": self.namespace,
            "port": self.port,
            "portName": self.port_name,
            "portNumber": self.port_number,
        }


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The live endpoints of one target at one revision."""

    target: TargetRef
    revision: int
    endpoints: tuple[Endpoint, ...] = ()
    service_config: Mapping[str, Any] = field(default_factory=dict)
    server_name: str = ""
    version: int = FORMAT_VERSION
    cluster_ips: tuple[str, ...] = ()
    """The Service's ClusterIPs (none for a headless Service): the last-resort route."""
    outlier_detection: OutlierDetection | None = None
    """Outlier detection (gRFC A50) for the target's clients; ``None``: off."""

    def __post_init__(self) -> None:
        if not self.server_name:
            object.__setattr__(self, "server_name", self.target.server_name)

    @property
    def ready_endpoints(self) -> tuple[Endpoint, ...]:
        """The endpoints that should get new traffic."""
        return tuple(e for e in self.endpoints if e.ready and not e.terminating)

    def to_dict(self) -> SnapshotDict:
        return self._document([e.to_dict() for e in self.endpoints], self.revision)

    def _document(self, endpoints: Any, revision: Any) -> SnapshotDict:
        doc: SnapshotDict = {
            "version": self.version,
            "target": self.target.to_dict(),
            "serverName": self.server_name,
            "revision": revision,
            "endpoints": endpoints,
            "serviceConfig": dict(self.service_config),
        }
        if self.cluster_ips:  # optional: absent keeps older documents byte-identical
            doc["clusterIPs"] = list(self.cluster_ips)
        if self.outlier_detection is not None:  # optional, like clusterIPs
            doc["outlierDetection"] = self.outlier_detection.to_dict()
        return doc


class EncodedEndpoints:
    """What the last :func:`encode` of one target wrote: each endpoint's text, and the rest.

    Handed back to the next call, an endpoint object already encoded there
    (the operator reuses the objects of unchanged endpoints) is not encoded
    again, nor is the rest of the document when only the revision moved. It
    holds the endpoints it names, so their ids stay theirs, and only the last
    call's.
    """

    __slots__ = ("_by_id", "_outline", "_outline_text")

    def __init__(self) -> None:
        self._by_id: dict[int, tuple[Endpoint, str]] = {}
        self._outline: SnapshotDict | None = None
        self._outline_text = ""


_ENDPOINT_LINES: Final = json.JSONEncoder(
    sort_keys=True, ensure_ascii=False, separators=(",\n      ", ": ")
)
"""Endpoints' flat objects, one key per line at their depth in the document (C encoder)."""
_ENDPOINTS_PLACE: Final = "\x00endpoints\x00"
_REVISION_PLACE: Final = "\x00revision\x00"
_ENDPOINTS_HERE: Final = json.dumps(_ENDPOINTS_PLACE)
_REVISION_HERE: Final = json.dumps(_REVISION_PLACE)


def encode(snapshot: Snapshot, encoded: EncodedEndpoints | None = None) -> str:
    """Serialize deterministically: equal snapshots give byte-identical text.

    The text is exactly ``json.dumps(snapshot.to_dict(), sort_keys=True,
    indent=2, ensure_ascii=False) + "\n"``, made faster: the endpoints (nearly
    all of it) go through the C encoder in one call (``indent`` alone would
    send every value through the pure-Python one, several times slower), and
    with ``encoded`` only what changed since the previous call is encoded.
    The rest of the document (its outline) is encoded with the places of the
    endpoints and the revision held by strings that no other value holds
    (else the plain way is taken); their text is put there.
    """
    outline = snapshot._document(_ENDPOINTS_PLACE, _REVISION_PLACE)
    if encoded is not None and encoded._outline == outline:
        text = encoded._outline_text
    else:
        text = json.dumps(outline, sort_keys=True, indent=2, ensure_ascii=False)
        if text.count(_ENDPOINTS_HERE) != 1 or text.count(_REVISION_HERE) != 1:
            slow = json.dumps(snapshot.to_dict(), sort_keys=True, indent=2, ensure_ascii=False)
            return slow + "\n"
        if encoded is not None:
            encoded._outline, encoded._outline_text = outline, text
    endpoints = _endpoints_text(snapshot.endpoints, encoded)
    text = text.replace(_REVISION_HERE, json.dumps(snapshot.revision), 1)
    return text.replace(_ENDPOINTS_HERE, endpoints, 1) + "\n"


def _endpoints_text(endpoints: Sequence[Endpoint], encoded: EncodedEndpoints | None) -> str:
    """The endpoints list as ``indent=2`` lays it out one level deep."""
    if not endpoints:
        return "[]"
    known = encoded._by_id if encoded is not None else {}
    texts: dict[int, tuple[Endpoint, str]] = {}
    missing = []
    for e in endpoints:
        hit = known.get(id(e))
        if hit is None:
            missing.append(e)
        else:
            texts[id(e)] = hit
    if missing:
        for e, item in zip(missing, _endpoint_items(missing), strict=True):
            texts[id(e)] = (e, item)
    if encoded is not None:
        encoded._by_id = texts
    return "[\n" + ",\n".join([texts[id(e)][1] for e in endpoints]) + "\n  ]"


def _endpoint_items(endpoints: Sequence[Endpoint]) -> list[str]:
    """Each endpoint's object as ``indent=2`` lays it out two levels deep, in one C call.

    Each endpoint is a flat object, so an item separator carrying the newline
    and indentation of its keys lays out its lines; the same separator comes
    between two endpoints right after a ``}``, which no string can hold
    before a raw newline: there the text is cut into one piece per endpoint.
    """
    text = _ENDPOINT_LINES.encode([e.to_dict() for e in endpoints])[2:-2]  # no '[{', '}]'
    return [f"    {{\n      {inner}\n    }}" for inner in text.split("},\n      {")]


def decode(data: str | bytes, source: str = "<snapshot>") -> Snapshot:
    """Parse and validate a snapshot document.

    Raises :class:`SnapshotError` naming ``source`` and the problem for a
    corrupt, truncated, invalid or unknown-version document, and for nothing
    else: whatever the bytes (deep nesting, numbers of any size), no other
    exception leaves this function.
    """
    try:
        return _decode(data, source)
    except SnapshotError:
        raise
    except RecursionError as exc:
        raise SnapshotError(source, "nested too deeply") from exc
    except Exception as exc:  # any other failure of the decoder: still a bad snapshot
        raise SnapshotError(source, f"cannot decode: {type(exc).__name__}: {exc}") from exc


def _decode(data: str | bytes, source: str) -> Snapshot:
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SnapshotError(
                source, f"not UTF-8 text ({exc.reason} at byte {exc.start})"
            ) from exc
    if not data.strip():
        raise SnapshotError(source, "empty file (truncated or half-written?)")
    try:
        doc = json.loads(data)
    except json.JSONDecodeError as exc:
        raise SnapshotError(
            source, f"corrupt JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from exc
    return _from_dict(_mapping(doc, source, "the document"), source)


def load(path: str | os.PathLike[str]) -> Snapshot:
    """Read and decode the snapshot file at ``path``."""
    source = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise SnapshotError(source, f"cannot read: {exc.strerror or exc}") from exc
    return decode(data, source)


def _from_dict(doc: Mapping[str, Any], source: str) -> Snapshot:
    version = doc.get("version")
    if version is None:
        raise SnapshotError(source, "missing 'version'")
    if type(version) is not int:
        raise SnapshotError(source, f"'version' must be an integer, got {_show(version)}")
    if version != FORMAT_VERSION:
        raise SnapshotError(
            source,
            f"unknown format version {version} (this client reads version {FORMAT_VERSION}; "
            "upgrade kuberesolver)",
        )
    t = _mapping(doc.get("target"), source, "'target'")
    port = t.get("port", "")
    if not isinstance(port, str | int) or isinstance(port, bool):
        raise SnapshotError(source, f"'target.port' must be a name or a number, got {_show(port)}")
    target = TargetRef(
        service=_str(t, "service", source, "target", required=True),
        namespace=_str(t, "namespace", source, "target", required=True),
        port=port,
        port_name=_str(t, "portName", source, "target"),
        port_number=_int(t, "portNumber", source, "target", default=0),
    )
    revision = _int(doc, "revision", source, "", default=None)
    raw_endpoints = doc.get("endpoints")
    if not isinstance(raw_endpoints, Sequence) or isinstance(raw_endpoints, str):
        raise SnapshotError(source, "'endpoints' must be a list")
    endpoints = tuple(
        _endpoint(_mapping(e, source, f"'endpoints[{i}]'"), source, i)
        for i, e in enumerate(raw_endpoints)
    )
    service_config = doc.get("serviceConfig", {})
    if not isinstance(service_config, Mapping):
        raise SnapshotError(source, "'serviceConfig' must be an object")
    server_name = doc.get("serverName", "")
    if not isinstance(server_name, str):
        raise SnapshotError(source, "'serverName' must be a string")
    return Snapshot(
        target=target,
        revision=revision,
        endpoints=endpoints,
        service_config=dict(service_config),
        server_name=server_name,
        version=version,
        cluster_ips=_cluster_ips(doc.get("clusterIPs"), source),
        outlier_detection=_outlier_detection(doc.get("outlierDetection"), source),
    )


def _outlier_detection(value: object, source: str) -> OutlierDetection | None:
    if value is None:
        return None
    try:
        return outlier_detection(value)
    except ValueError as exc:
        raise SnapshotError(source, str(exc)) from None


def _cluster_ips(value: object, source: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise SnapshotError(source, f"'clusterIPs' must be a list, got {value!r}")
    out: list[str] = []
    for i, ip in enumerate(value):
        try:
            if not isinstance(ip, str):
                raise TypeError(ip)
            out.append(str(ipaddress.ip_address(ip)))
        except (TypeError, ValueError):
            raise SnapshotError(
                source, f"'clusterIPs[{i}]' must be an IP address, got {ip!r}"
            ) from None
    return tuple(out)


def _endpoint(e: Mapping[str, Any], source: str, i: int) -> Endpoint:
    where = f"endpoints[{i}]"
    port = _int(e, "port", source, where, default=None)
    if not 1 <= port <= 65535:
        raise SnapshotError(source, f"'{where}.port' must be in 1..65535, got {port}")
    address = _str(e, "address", source, where, required=True)
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise SnapshotError(
            source, f"'{where}.address' must be an IPv4 or IPv6 address, got {_show(address)}"
        ) from None
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
        raise SnapshotError(
            source, f"'{where}.address' must have no zone index, got {_show(address)}"
        )
    return Endpoint(
        address=address,
        port=port,
        ready=_bool(e, "ready", source, where, default=True),
        serving=_bool(e, "serving", source, where, default=True),
        terminating=_bool(e, "terminating", source, where, default=False),
        zone=_opt_str(e, "zone", source, where),
        node=_opt_str(e, "node", source, where),
        pod=_opt_str(e, "pod", source, where),
    )


def _show(value: object) -> str:
    """A short repr for messages: huge or deep values are abbreviated."""
    if type(value) is int and value.bit_length() > 64:
        return f"an integer of {value.bit_length()} bits"
    return reprlib.repr(value)


def _mapping(value: object, source: str, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise SnapshotError(source, f"{what} must be an object, got {type(value).__name__}")
    return value


def _name(where: str, key: str) -> str:
    return f"'{where}.{key}'" if where else f"'{key}'"


def _str(d: Mapping[str, Any], key: str, source: str, where: str, required: bool = False) -> str:
    value = d.get(key, None if required else "")
    if not isinstance(value, str) or (required and not value):
        raise SnapshotError(
            source, f"{_name(where, key)} must be a non-empty string, got {_show(value)}"
        )
    return value


def _opt_str(d: Mapping[str, Any], key: str, source: str, where: str) -> str | None:
    value = d.get(key)
    if value is not None and not isinstance(value, str):
        raise SnapshotError(
            source, f"{_name(where, key)} must be a string or null, got {_show(value)}"
        )
    return value or None


_MAX_INT: Final = 2**63 - 1


def _int(d: Mapping[str, Any], key: str, source: str, where: str, default: int | None) -> int:
    value = d.get(key, default)
    if type(value) is not int or not 0 <= value <= _MAX_INT:
        raise SnapshotError(
            source,
            f"{_name(where, key)} must be a non-negative integer below 2**63, got {_show(value)}",
        )
    return value


def _bool(d: Mapping[str, Any], key: str, source: str, where: str, default: bool) -> bool:
    value = d.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise SnapshotError(
            source, f"{_name(where, key)} must be true or false, got {_show(value)}"
        )
    return value
