"""Pure builders, shared by every xDS server of ours: a snapshot -> the xDS resources grpc consumes.

Both the client's in-process ADS server (:mod:`kuberesolver.xds`) and the
operator-side one (:mod:`kuberesolver.xds`) serve what these build. For
one resource name ``N`` under the federation authority ``A`` (gRFC A47):

- a Listener ``xdstp://A/envoy.config.listener.v3.Listener/N`` whose
  HttpConnectionManager api_listener holds an inline RouteConfiguration:
  one route per ``methodConfig`` name of the snapshot's service config (its
  ``retryPolicy`` as the route's ``retry_policy``, its ``timeout`` as
  ``max_stream_duration`` where the spec asks), most specific first, then the
  default route; a route without a retry policy of its own keeps a bounded
  retry on UNAVAILABLE;
- a Cluster ``xdstp://A/envoy.config.cluster.v3.Cluster/N`` (type EDS,
  ``eds_service_name`` set, as xdstp names require) that carries the
  load-balancing policy and, when the snapshot has it, outlier detection (A50);
- a ClusterLoadAssignment ``xdstp://A/envoy.config.endpoint.v3.ClusterLoadAssignment/N``.

Rules grpcio enforces, measured on grpcio 1.85 and honoured here:

- every LocalityLbEndpoints needs a ``locality`` and a ``load_balancing_weight``;
- a duplicate address in one ClusterLoadAssignment makes grpc reject the whole
  resource, so endpoints are de-duplicated by IP address, however it is
  spelt (the healthiest copy wins);
- only HEALTHY and UNKNOWN endpoints get traffic: terminating endpoints are
  served as DRAINING and not-ready ones as UNHEALTHY;
- least_request is NACKed by grpc's C core; weighted round robin (ORCA) is the
  load-aware policy offered instead.

Zones: a spec with a ``zone`` (the client's own) puts that zone first and the
others one priority below. A spec with ``zone_localities`` (the operator's,
which serves clients of every zone) makes each zone a locality at one
priority, weighted by its ready endpoints so that each endpoint keeps an even
share; that is done for round_robin only, since grpc balances pick_first and
weighted round robin per locality.

The Service's ClusterIPs, when the snapshot has them, are the last locality,
at the lowest priority: grpc's priority policy sends calls there (through
kube-proxy) only while no endpoint of the higher priorities can be reached,
and returns as soon as one can.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from envoy.config.cluster.v3 import cluster_pb2, outlier_detection_pb2
from envoy.config.core.v3 import address_pb2, base_pb2, config_source_pb2, extension_pb2
from envoy.config.core.v3 import health_check_pb2 as hc_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import api_listener_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.load_balancing_policies.client_side_weighted_round_robin.v3 import (
    client_side_weighted_round_robin_pb2 as wrr_pb2,
)
from envoy.extensions.load_balancing_policies.pick_first.v3 import pick_first_pb2
from envoy.extensions.load_balancing_policies.round_robin.v3 import round_robin_pb2
from envoy.extensions.load_balancing_policies.wrr_locality.v3 import wrr_locality_pb2
from google.protobuf import (  # type: ignore[import-untyped]
    any_pb2,
    duration_pb2,
    wrappers_pb2,
)
from google.protobuf.message import Message  # type: ignore[import-untyped]

from kuberesolver.core.policies import (
    DEFAULT_MAX_ATTEMPTS,
    PICK_FIRST,
    ROUND_ROBIN,
    WEIGHTED_ROUND_ROBIN,
    policy_from_service_config,
)
from kuberesolver.core.service_config import (
    MethodRule,
    OutlierDetection,
    RetryRule,
    method_rules,
    unapplied_parts,
)
from kuberesolver.core.snapshot import Endpoint, Snapshot

__all__ = [
    "AUTHORITY",
    "CLUSTER_IP_LOCALITY",
    "CLUSTER_TYPE",
    "ENDPOINT_TYPE",
    "LISTENER_TYPE",
    "TYPES",
    "ResourceSpec",
    "Spec",
    "build_cluster",
    "build_endpoints",
    "build_listener",
    "build_outlier_detection",
    "build_resources",
    "build_routes",
    "cluster_name",
    "effective_policy",
    "endpoints_name",
    "health_of",
    "listener_name",
    "unapplied_service_config_keys",
]

AUTHORITY: Final = "kuberesolver"
"""The federation authority of the client's in-process server (the default)."""

CLUSTER_IP_LOCALITY: Final = "service-cluster-ip"
"""The zone name of the lowest-priority locality: the Service's ClusterIPs."""

LISTENER_TYPE: Final = "type.googleapis.com/envoy.config.listener.v3.Listener"
CLUSTER_TYPE: Final = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINT_TYPE: Final = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
TYPES: Final = (LISTENER_TYPE, CLUSTER_TYPE, ENDPOINT_TYPE)
"""The three resource types, in the order grpc asks for them."""


class Spec(Protocol):
    """What the builders read of a spec: the client's ChannelSpec and :class:`ResourceSpec`."""

    @property
    def name(self) -> str:
        """The resource name after the type: ``xdstp://<authority>/<type>/<name>``."""

    @property
    def authority(self) -> str: ...
    @property
    def service(self) -> str: ...
    @property
    def namespace(self) -> str: ...
    @property
    def lb_policy(self) -> str:
        """A policy of ``LB_POLICIES``, or ``""``: the snapshot's (else round_robin)."""

    @property
    def zone(self) -> str | None:
        """The client's zone, preferred over the others; ``None``: no preference."""

    @property
    def zone_localities(self) -> bool:
        """One locality per zone (round_robin only; see the module docstring)."""

    @property
    def max_attempts(self) -> int: ...
    @property
    def cluster_ip_fallback(self) -> bool: ...
    @property
    def method_timeouts(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class ResourceSpec:
    """A spec with an explicit name and authority: what a remote xDS server serves."""

    name: str
    service: str
    namespace: str
    authority: str = AUTHORITY
    lb_policy: str = ""
    zone: str | None = None
    zone_localities: bool = True
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    cluster_ip_fallback: bool = True
    method_timeouts: bool = False
    """Serve ``methodConfig`` timeouts as ``max_stream_duration``: off by default, since
    grpcio ends such calls 1-2 s early (grpc/grpc#34547, still in 1.85)."""


def _xdstp(authority: str, kind: str, name: str) -> str:
    return f"xdstp://{authority}/{kind}/{name}"


def listener_name(name: str, authority: str = AUTHORITY) -> str:
    return _xdstp(authority, "envoy.config.listener.v3.Listener", name)


def cluster_name(name: str, authority: str = AUTHORITY) -> str:
    return _xdstp(authority, "envoy.config.cluster.v3.Cluster", name)


def endpoints_name(name: str, authority: str = AUTHORITY) -> str:
    return _xdstp(authority, "envoy.config.endpoint.v3.ClusterLoadAssignment", name)


def unapplied_service_config_keys(
    service_config: Mapping[str, Any], method_timeouts: bool = False
) -> list[str]:
    """What of the service config the client does not apply (e.g. ``healthCheckConfig``).

    The load-balancing policy and ``methodConfig``'s ``retryPolicy`` (and
    ``timeout`` with ``method_timeouts``) are translated into xDS resources;
    the rest is named here: other keys, and the parts xDS cannot carry.
    """
    return unapplied_parts(service_config, timeouts=method_timeouts)


def health_of(endpoint: Endpoint) -> int:
    """The xDS health status for an endpoint's Kubernetes conditions."""
    if endpoint.terminating:
        return hc_pb2.DRAINING  # type: ignore[no-any-return]
    if not endpoint.ready:
        return hc_pb2.UNHEALTHY  # type: ignore[no-any-return]
    return hc_pb2.HEALTHY  # type: ignore[no-any-return]


_HEALTH_RANK: Final = {hc_pb2.HEALTHY: 0, hc_pb2.DRAINING: 1, hc_pb2.UNHEALTHY: 2}


def _canonical(address: str) -> str:
    """One spelling per IP address (``::0:1`` and ``::1`` are one address to grpc)."""
    try:
        return ipaddress.ip_address(address).compressed
    except ValueError:
        return address


def _dedupe(endpoints: Iterable[Endpoint]) -> list[tuple[Endpoint, int]]:
    """One entry per address:port, keeping the healthiest copy; sorted for stable output."""
    best: dict[tuple[str, int], tuple[Endpoint, int]] = {}
    for ep in endpoints:
        health = health_of(ep)
        key = (_canonical(ep.address), ep.port)
        old = best.get(key)
        if old is None or _HEALTH_RANK[health] < _HEALTH_RANK[old[1]]:
            best[key] = (ep, health)
    return [best[k] for k in sorted(best)]


def _any(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def _ms(ms: int) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromMilliseconds(ms)
    return d


def _ns(ns: int) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromNanoseconds(ns)
    return d


def build_routes(
    spec: Spec, service_config: Mapping[str, Any] | None = None
) -> list[route_components_pb2.Route]:
    """The routes for ``service_config``'s ``methodConfig``, in grpc's order, then the default.

    ``/service/method`` names match the path exactly, ``/service/`` names by
    prefix, and the default (an empty name, or none) matches every path. A
    route whose rule sets no retry policy keeps the channel's default one.
    """
    rules = method_rules(service_config or {})
    if not rules or rules[-1].service:
        rules.append(MethodRule("", ""))
    return [_route(spec, rule) for rule in rules]


def _route(spec: Spec, rule: MethodRule) -> route_components_pb2.Route:
    match = (
        route_components_pb2.RouteMatch(path=rule.path)
        if rule.path
        else route_components_pb2.RouteMatch(prefix=rule.prefix)
    )
    action = route_components_pb2.RouteAction(
        cluster=cluster_name(spec.name, spec.authority),
        retry_policy=(
            _method_retry(rule.retry) if rule.retry else _retry_policy(spec.max_attempts)
        ),
    )
    if rule.timeout_ns is not None and spec.method_timeouts:
        timeout = _ns(rule.timeout_ns)
        action.max_stream_duration.max_stream_duration.CopyFrom(timeout)
        action.max_stream_duration.grpc_timeout_header_max.CopyFrom(timeout)
    return route_components_pb2.Route(match=match, route=action)


def _method_retry(rule: RetryRule) -> route_components_pb2.RetryPolicy:
    return route_components_pb2.RetryPolicy(
        retry_on=",".join(rule.retry_on),
        num_retries=wrappers_pb2.UInt32Value(value=rule.max_attempts - 1),
        retry_back_off=route_components_pb2.RetryPolicy.RetryBackOff(
            base_interval=_ns(rule.initial_backoff_ns), max_interval=_ns(rule.max_backoff_ns)
        ),
    )


def build_listener(spec: Spec, snapshot: Snapshot | None = None) -> listener_pb2.Listener:
    """A client Listener whose inline routes send every call to our cluster."""
    routes = build_routes(spec, snapshot.service_config if snapshot is not None else None)
    route_config = route_pb2.RouteConfiguration(
        name=f"{spec.name}-route",
        virtual_hosts=[
            route_components_pb2.VirtualHost(name=spec.name, domains=["*"], routes=routes)
        ],
    )
    manager = hcm_pb2.HttpConnectionManager(
        route_config=route_config,
        http_filters=[hcm_pb2.HttpFilter(name="router", typed_config=_any(router_pb2.Router()))],
    )
    return listener_pb2.Listener(
        name=listener_name(spec.name, spec.authority),
        api_listener=api_listener_pb2.ApiListener(api_listener=_any(manager)),
    )


def _retry_policy(max_attempts: int) -> route_components_pb2.RetryPolicy | None:
    if max_attempts <= 1:
        return None
    return route_components_pb2.RetryPolicy(
        retry_on="unavailable",
        num_retries=wrappers_pb2.UInt32Value(value=max_attempts - 1),
        retry_back_off=route_components_pb2.RetryPolicy.RetryBackOff(
            base_interval=_ms(5), max_interval=_ms(50)
        ),
    )


def _lb_policy(policy: str) -> cluster_pb2.LoadBalancingPolicy:
    endpoint_picking: Message
    if policy == WEIGHTED_ROUND_ROBIN:
        endpoint_picking = wrr_pb2.ClientSideWeightedRoundRobin(
            blackout_period=_ms(1000),
            weight_update_period=_ms(500),
            weight_expiration_period=_ms(30_000),
        )
    elif policy == PICK_FIRST:
        endpoint_picking = pick_first_pb2.PickFirst()
    else:
        endpoint_picking = round_robin_pb2.RoundRobin()
    child = cluster_pb2.LoadBalancingPolicy(
        policies=[
            cluster_pb2.LoadBalancingPolicy.Policy(
                typed_extension_config=extension_pb2.TypedExtensionConfig(
                    name=policy, typed_config=_any(endpoint_picking)
                )
            )
        ]
    )
    wrapper = wrr_locality_pb2.WrrLocality(endpoint_picking_policy=child)
    return cluster_pb2.LoadBalancingPolicy(
        policies=[
            cluster_pb2.LoadBalancingPolicy.Policy(
                typed_extension_config=extension_pb2.TypedExtensionConfig(
                    name="wrr_locality", typed_config=_any(wrapper)
                )
            )
        ]
    )


def effective_policy(spec: Spec, snapshot: Snapshot | None) -> str:
    """The channel's policy, else the snapshot service config's, else round_robin."""
    if spec.lb_policy:
        return spec.lb_policy
    if snapshot is not None:
        return policy_from_service_config(snapshot.service_config) or ROUND_ROBIN
    return ROUND_ROBIN


def build_outlier_detection(od: OutlierDetection) -> outlier_detection_pb2.OutlierDetection:
    """gRFC A50's settings as the Cluster's ``outlier_detection``.

    An algorithm left out is switched off explicitly: xDS enforces success-rate
    ejection at 100% when ``enforcing_success_rate`` is unset.
    """

    def u32(value: int) -> wrappers_pb2.UInt32Value:
        return wrappers_pb2.UInt32Value(value=value)

    out = outlier_detection_pb2.OutlierDetection(
        interval=_ns(od.interval_ns),
        base_ejection_time=_ns(od.base_ejection_time_ns),
        max_ejection_time=_ns(od.max_ejection_time_ns),
        max_ejection_percent=u32(od.max_ejection_percent),
        enforcing_success_rate=u32(0),
        enforcing_failure_percentage=u32(0),
    )
    if od.success_rate is not None:
        s = od.success_rate
        out.success_rate_stdev_factor.value = s.stdev_factor
        out.enforcing_success_rate.value = s.enforcement_percentage
        out.success_rate_minimum_hosts.value = s.minimum_hosts
        out.success_rate_request_volume.value = s.request_volume
    if od.failure_percentage is not None:
        f = od.failure_percentage
        out.failure_percentage_threshold.value = f.threshold
        out.enforcing_failure_percentage.value = f.enforcement_percentage
        out.failure_percentage_minimum_hosts.value = f.minimum_hosts
        out.failure_percentage_request_volume.value = f.request_volume
    return out


def build_cluster(spec: Spec, snapshot: Snapshot | None = None) -> cluster_pb2.Cluster:
    """An EDS Cluster carrying the load-balancing policy and the snapshot's outlier detection."""
    od = snapshot.outlier_detection if snapshot is not None else None
    return cluster_pb2.Cluster(
        name=cluster_name(spec.name, spec.authority),
        type=cluster_pb2.Cluster.EDS,
        eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(
            eds_config=config_source_pb2.ConfigSource(
                self=config_source_pb2.SelfConfigSource(),
            ),
            service_name=endpoints_name(spec.name, spec.authority),
        ),
        load_balancing_policy=_lb_policy(effective_policy(spec, snapshot)),
        connect_timeout=_ms(5000),
        outlier_detection=build_outlier_detection(od) if od is not None else None,
    )


def build_endpoints(
    spec: Spec,
    endpoints: Iterable[Endpoint],
    revision: int | None = None,
    cluster_ips: Iterable[str] = (),
    service_port: int = 0,
    *,
    by_zone: bool = False,
) -> endpoint_pb2.ClusterLoadAssignment:
    """The ClusterLoadAssignment: localities, by priority.

    Without a zone, every endpoint sits in one locality at priority 0, so the
    policy balances per endpoint. With a zone that has a ready endpoint, that
    zone's endpoints get priority 0 and all others priority 1: grpc's priority
    policy then fails over only when the own zone cannot serve. With
    ``by_zone`` (and no zone of the client's), each zone is a locality at
    priority 0, weighted by its ready endpoints.

    With no ready endpoint at all, the one locality is named for the problem:
    grpc quotes it in the UNAVAILABLE status of a call that fails fast.

    ``cluster_ips`` with ``service_port`` (and ``spec.cluster_ip_fallback``)
    add a last locality, one priority below all others, holding the Service's
    ClusterIPs: kube-proxy always knows the current pods, so calls still land
    while this snapshot is stale.
    """
    entries = _dedupe(endpoints)
    prefer_own = spec.zone is not None and any(
        ep.zone == spec.zone and health == hc_pb2.HEALTHY for ep, health in entries
    )
    levels: list[list[_Locality]] = []
    if prefer_own:
        own = [e for e in entries if e[0].zone == spec.zone]
        rest = [e for e in entries if e[0].zone != spec.zone]
        levels.append([(spec.zone or "", 1, own)])
        if rest:
            levels.append([("other-zones", 1, rest)])
    elif any(health == hc_pb2.HEALTHY for _, health in entries):
        levels.append(_zones(entries) if by_zone else [("all", 1, entries)])
    else:
        at = f" at revision {revision}" if revision is not None else ""
        reason = "no ready endpoints" if entries else "no endpoints"
        problem = f"{reason} for {spec.service}.{spec.namespace} in its kuberesolver snapshot{at}"
        levels.append([(problem, 1, entries)])
    fallback = sorted(set(cluster_ips)) if spec.cluster_ip_fallback and service_port else []
    if fallback:
        virtual = [(Endpoint(ip, service_port), hc_pb2.HEALTHY) for ip in fallback]
        levels.append([(CLUSTER_IP_LOCALITY, 1, virtual)])
    return endpoint_pb2.ClusterLoadAssignment(
        cluster_name=endpoints_name(spec.name, spec.authority),
        endpoints=[
            endpoint_components_pb2.LocalityLbEndpoints(
                locality=base_pb2.Locality(region=spec.authority, zone=zone),
                load_balancing_weight=wrappers_pb2.UInt32Value(value=weight),
                priority=priority,
                lb_endpoints=[_lb_endpoint(ep, health) for ep, health in members],
            )
            for priority, level in enumerate(levels)
            for zone, weight, members in level
        ],
    )


_Locality = tuple[str, int, list[tuple[Endpoint, int]]]
"""A locality's zone name, its weight and its members (endpoint, health)."""


def _zones(entries: list[tuple[Endpoint, int]]) -> list[_Locality]:
    """One locality per zone (``""`` for endpoints without one), weighted by ready endpoints."""
    by_zone: dict[str, list[tuple[Endpoint, int]]] = {}
    for entry in entries:
        by_zone.setdefault(entry[0].zone or "", []).append(entry)
    return [
        (zone, max(1, sum(1 for _, h in members if h == hc_pb2.HEALTHY)), members)
        for zone, members in sorted(by_zone.items())
    ]


def _lb_endpoint(ep: Endpoint, health: int) -> endpoint_components_pb2.LbEndpoint:
    return endpoint_components_pb2.LbEndpoint(
        endpoint=endpoint_components_pb2.Endpoint(
            address=address_pb2.Address(
                socket_address=address_pb2.SocketAddress(address=ep.address, port_value=ep.port)
            ),
            hostname=ep.pod or "",
        ),
        health_status=health,
    )


def build_resources(spec: Spec, snapshot: Snapshot) -> dict[str, dict[str, Message]]:
    """All three resources for one spec: ``{type_url: {name: resource}}``."""
    name, authority = spec.name, spec.authority
    by_zone = spec.zone_localities and effective_policy(spec, snapshot) == ROUND_ROBIN
    return {
        LISTENER_TYPE: {listener_name(name, authority): build_listener(spec, snapshot)},
        CLUSTER_TYPE: {cluster_name(name, authority): build_cluster(spec, snapshot)},
        ENDPOINT_TYPE: {
            endpoints_name(name, authority): build_endpoints(
                spec,
                snapshot.endpoints,
                snapshot.revision,
                cluster_ips=snapshot.cluster_ips,
                service_port=snapshot.target.port_number,
                by_zone=by_zone,
            )
        },
    }
