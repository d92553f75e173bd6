"""EndpointSlices to a sorted, de-duplicated tuple of :class:`~kuberesolver.core.snapshot.Endpoint`.

Pure functions over plain dicts shaped like the API's objects: the one source
of truth for the operator and for direct mode (a client that watches the API
itself). Both keep only the compact views built here (:func:`service_view`,
:func:`slice_view`), so memory grows with endpoints, not with whole objects.
Only the standard library and :mod:`kuberesolver.core.snapshot` are imported.

What is honoured, and where kuberesolver for Go goes wrong:

- every slice of the Service counts (label ``kubernetes.io/service-name``),
  not only the last one seen;
- an endpoint listed in two slices (it happens while endpoints move) appears
  once;
- ``ready`` absent means ready; ``serving`` absent means as ready;
  ``terminating`` absent means not terminating;
- a Service port maps to its targetPort through the slices' own ports,
  matched by the Service port's name (each slice may carry its own number);
- the output is sorted, so an unchanged state gives byte-identical output.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, NotRequired, TypeAlias, TypedDict

from kuberesolver.core.snapshot import Endpoint, EndpointFields

__all__ = [
    "MANAGED_BY_LABEL",
    "SERVICE_NAME_LABEL",
    "EndpointCache",
    "PortError",
    "ServicePort",
    "ServiceView",
    "SliceView",
    "build_endpoints",
    "pick_family",
    "resolve_port",
    "resource_revision",
    "service_view",
    "slice_view",
]

SERVICE_NAME_LABEL: Final = "kubernetes.io/service-name"
_NONE: Final[Mapping[str, Any]] = {}
MANAGED_BY_LABEL: Final = "endpointslice.kubernetes.io/managed-by"


def resource_revision(value: object) -> int:
    """A ``resourceVersion`` as a number (an etcd revision); 0 when it is not one."""
    try:
        return int(str(value))
    except ValueError:
        return 0


class PortError(LookupError):
    """The requested port is not one of the Service's ports."""


class PortView(TypedDict):
    name: str
    port: int
    protocol: str


class ServiceView(TypedDict):
    """What is kept of a Service."""

    namespace: str
    name: str
    ports: list[PortView]
    ipFamilies: list[str]
    annotations: dict[str, str]
    clusterIPs: NotRequired[list[str]]
    """Its virtual IPs; absent for a headless Service."""
    publishNotReadyAddresses: NotRequired[bool]
    """Present (true) only when the Service publishes not-ready addresses."""


EndpointView: TypeAlias = EndpointFields


class SliceView(TypedDict):
    """What is kept of an EndpointSlice."""

    name: str
    addressType: str
    ports: list[PortView]
    endpoints: list[EndpointView]
    managedBy: NotRequired[str]
    """Its ``endpointslice.kubernetes.io/managed-by`` label, when it has one."""
    revision: NotRequired[int]
    """Its ``resourceVersion`` as a number (see :func:`resource_revision`)."""


@dataclass(frozen=True, slots=True)
class ServicePort:
    """A resolved Service port."""

    name: str
    number: int
    protocol: str = "TCP"


def _port_views(ports: Any) -> list[PortView]:
    """A Service's or a slice's ``ports``, with the API's defaults filled in."""
    return [
        {
            "name": p.get("name") or "",
            "port": int(p.get("port") or 0),
            "protocol": p.get("protocol") or "TCP",
        }
        for p in ports or []
    ]


def service_view(body: Mapping[str, Any]) -> ServiceView:
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    ports = _port_views(spec.get("ports"))
    view: ServiceView = {
        "namespace": meta.get("namespace") or "",
        "name": meta.get("name") or "",
        "ports": ports,
        "ipFamilies": [str(f) for f in spec.get("ipFamilies") or []],
        "annotations": {str(k): str(v) for k, v in (meta.get("annotations") or {}).items()},
    }
    ips = [str(ip) for ip in spec.get("clusterIPs") or [spec.get("clusterIP")] if ip]
    if ips and ips != ["None"]:
        view["clusterIPs"] = ips
    if spec.get("publishNotReadyAddresses"):
        view["publishNotReadyAddresses"] = True
    return view


def slice_view(body: Mapping[str, Any]) -> SliceView:
    meta = body.get("metadata") or {}
    ports = _port_views(body.get("ports"))
    endpoints: list[EndpointView] = []
    append = endpoints.append
    for ep in body.get("endpoints") or ():  # the hot loop of every slice event: kept lean
        addresses = ep.get("addresses")
        if not addresses:
            continue
        conditions = ep.get("conditions") or _NONE
        ready = conditions.get("ready")
        ready = True if ready is None else bool(ready)
        serving = conditions.get("serving")
        serving = ready if serving is None else bool(serving)
        target = ep.get("targetRef")
        address = addresses[0]  # only the first address has defined semantics (the API's docs)
        append(
            {
                "address": address if type(address) is str else str(address),
                "ready": ready,
                "serving": serving,
                "terminating": bool(conditions.get("terminating")),
                "zone": ep.get("zone") or None,
                "node": ep.get("nodeName") or None,
                "pod": (target.get("name") or None)
                if target and target.get("kind") == "Pod"
                else None,
            }
        )
    view: SliceView = {
        "name": meta.get("name") or "",
        "addressType": body.get("addressType") or "",
        "ports": ports,
        "endpoints": endpoints,
    }
    managed_by = (meta.get("labels") or {}).get(MANAGED_BY_LABEL)
    if managed_by:
        view["managedBy"] = str(managed_by)
    if meta.get("resourceVersion"):
        view["revision"] = resource_revision(meta["resourceVersion"])
    return view


def resolve_port(service: ServiceView, requested: int | str) -> ServicePort:
    """The Service port asked for: by number, by name, or the first one for ``""``."""
    ports = service["ports"]
    if not ports:
        raise PortError(f"Service {service['namespace']}/{service['name']} has no ports")
    if requested == "":
        chosen = ports[0]
    else:
        if isinstance(requested, int):
            matches = [p for p in ports if p["port"] == requested]
        else:
            matches = [p for p in ports if p["name"] == requested]
        if not matches:
            known = ", ".join(
                f"{p['name']}:{p['port']}" if p["name"] else str(p["port"]) for p in ports
            )
            raise PortError(
                f"Service {service['namespace']}/{service['name']} has no port {requested!r} "
                f"(it has {known})"
            )
        chosen = matches[0]
    return ServicePort(name=chosen["name"], number=chosen["port"], protocol=chosen["protocol"])


def pick_family(
    service: ServiceView | None, slices: Iterable[SliceView], requested: str = ""
) -> str:
    """``requested`` if set; else IPv4 when the Service (or any slice) has it; else IPv6."""
    if requested:
        return requested
    families = list(service["ipFamilies"]) if service else []
    if not families:
        families = sorted(
            {s["addressType"] for s in slices if s["addressType"] in ("IPv4", "IPv6")}
        )
    if not families or "IPv4" in families:
        return "IPv4"
    return families[0]


class EndpointCache:
    """The endpoints of the last :func:`build_endpoints` call, by their fields.

    Handed back to the next call, an endpoint whose fields did not change is
    the same object: it is not built again, and comparing the new tuple with
    the last one (is it a new revision?) is a pointer check per endpoint. It
    holds only the last call's endpoints.
    """

    __slots__ = ("_by_fields",)

    def __init__(self) -> None:
        self._by_fields: dict[tuple[Any, ...], _Sorted] = {}


_Sorted: TypeAlias = tuple[tuple[Any, ...], Endpoint]
"""An endpoint with its sort key (address as a number, then port)."""


def build_endpoints(
    slices: Iterable[SliceView],
    port: ServicePort,
    family: str = "IPv4",
    include_terminating: bool = False,
    cache: EndpointCache | None = None,
) -> tuple[Endpoint, ...]:
    """Merge every slice into one sorted tuple, one entry per ``address:port``.

    A slice of another address family, or without the Service port (matched by
    name and protocol), contributes nothing. Terminating endpoints are left out
    unless ``include_terminating``. When an address is listed twice, the entry
    with the best conditions wins (ready, then serving, then not terminating),
    so a moving endpoint never flaps. With ``cache``, unchanged endpoints are
    the objects of the previous call (see :class:`EndpointCache`).
    """
    known = cache._by_fields if cache is not None else {}
    built: dict[tuple[Any, ...], _Sorted] = {}
    best: dict[tuple[str, int], _Sorted] = {}
    for s in slices:
        if s["addressType"] != family:
            continue
        target_port = _slice_port(s, port)
        if target_port is None:
            continue
        for ep in s["endpoints"]:
            terminating = ep["terminating"]
            if terminating and not include_terminating:
                continue
            address = ep["address"]
            fields = (
                address,
                target_port,
                ep["ready"] and not terminating,
                ep["serving"],
                terminating,
                ep["zone"],
                ep["node"],
                ep["pod"],
            )
            entry = built.get(fields) or known.get(fields)
            if entry is None:
                entry = ((_address_key(address), target_port), Endpoint(*fields))
            built[fields] = entry
            key = (address, target_port)
            current = best.get(key)
            if current is None or _rank(entry[1]) > _rank(current[1]):
                best[key] = entry
    if cache is not None:
        cache._by_fields = built
    # A tie of sort keys (one IP written two ways) falls to the Endpoints: their addresses differ.
    return tuple([e for _, e in sorted(best.values())])


def _slice_port(s: SliceView, port: ServicePort) -> int | None:
    for p in s["ports"]:
        if p["name"] == port.name and p["protocol"] == port.protocol and 0 < p["port"] <= 65535:
            return p["port"]
    return None


def _rank(e: Endpoint) -> tuple[bool, bool, bool, bool, tuple[str, str, str]]:
    return (
        e.ready,
        e.serving,
        not e.terminating,
        bool(e.pod or e.node or e.zone),
        (e.pod or "", e.node or "", e.zone or ""),
    )


@functools.lru_cache(maxsize=1 << 17)
def _address_key(address: str) -> tuple[int, int, str]:
    """Sort addresses numerically (cached: the same addresses come back on every change)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return (99, 0, address)
    return (ip.version, int(ip), "")
