"""The decision for one GrpcTarget: from what the operator sees to what it should publish.

:func:`plan` is pure. It takes the GrpcTarget's spec, the Service and slices
from the indexes and what was published before, and returns a :class:`Plan`:
the snapshot and ConfigMap data to publish (or ``None`` to keep the last good
ConfigMap), the conditions, and the Events worth emitting. The handlers only
carry it out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kuberesolver.operator.configmap import build_data
from kuberesolver.operator.endpoints import (
    PortError,
    ServiceView,
    SliceView,
    build_endpoints,
    pick_family,
    resolve_port,
)
from kuberesolver.operator.render import (
    RenderError,
    build_service_config,
    render_templates,
    template_context,
)
from kuberesolver.operator.spec import (
    ALLOWED_NAMESPACES_ANNOTATION,
    SpecError,
    TargetSpec,
    parse_spec,
)
from kuberesolver.operator.status import Condition, condition
from kuberesolver.snapshot import Endpoint, Snapshot, TargetRef

__all__ = ["Plan", "Published", "baseline", "consents", "next_revision", "plan"]


@dataclass(frozen=True, slots=True)
class Published:
    """What the ConfigMap held (or the status said) last time."""

    revision: int
    endpoints: tuple[Endpoint, ...]


@dataclass(frozen=True, slots=True)
class Plan:
    target: TargetSpec | None
    snapshot: Snapshot | None = None
    data: dict[str, str] | None = None
    """The ConfigMap data to publish; ``None`` keeps the last good ConfigMap untouched."""
    conditions: tuple[Condition, ...] = ()
    warnings: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    """``(reason, message)`` of the problems worth a Warning Event."""

    @property
    def publishes(self) -> bool:
        return self.data is not None and self.snapshot is not None


def consents(service: ServiceView | None, target_namespace: str) -> bool:
    """Whether the Service allows GrpcTargets of ``target_namespace`` to publish it."""
    if service is None:
        return False
    if service["namespace"] == target_namespace:
        return True
    raw = service["annotations"].get(ALLOWED_NAMESPACES_ANNOTATION, "")
    allowed = {part.strip() for part in raw.split(",") if part.strip()}
    return "*" in allowed or target_namespace in allowed


def baseline(
    own: Published | None, stored: Published | None, status_revision: int = 0
) -> Published | None:
    """What to count the next revision from, after (re-)reading the ConfigMap.

    ``own`` is what this worker last published itself, ``stored`` what the
    ConfigMap holds now (``None`` if absent or unreadable), ``status_revision``
    what the status says. The stored snapshot wins when it is at least as new
    and says something else (another replica, a write whose answer was lost,
    an edit by hand), so a revision number never stands for two endpoint lists.
    """
    candidate = stored
    if candidate is None and status_revision:
        candidate = Published(status_revision, ())
    elif candidate is not None and status_revision > candidate.revision:
        candidate = Published(status_revision, candidate.endpoints)
    if own is None:
        return candidate
    if candidate is None:
        return own
    if candidate.revision > own.revision:
        return candidate
    if (
        stored is not None
        and candidate.revision == own.revision
        and stored.endpoints != own.endpoints
    ):
        return candidate
    return own


def next_revision(previous: Published | None, endpoints: tuple[Endpoint, ...]) -> int:
    """The previous revision when the endpoints are the same; one more when they differ."""
    if previous is None:
        return 1
    if previous.endpoints == endpoints:
        return max(previous.revision, 1)
    return previous.revision + 1


def plan(
    name: str,
    namespace: str,
    raw_spec: Mapping[str, Any],
    service: ServiceView | None,
    slices: Iterable[SliceView],
    previous: Published | None,
) -> Plan:
    try:
        target = parse_spec(name, namespace, raw_spec)
    except SpecError as exc:
        msg = str(exc)
        return Plan(
            target=None,
            conditions=(
                condition("Ready", False, "InvalidSpec", msg),
                condition("ServiceFound", None, "InvalidSpec", msg),
                condition("Rendered", False, "InvalidSpec", msg),
            ),
            warnings=(("InvalidSpec", msg),),
        )

    svc_name = f"{target.service_namespace}/{target.service}"
    if target.cross_namespace and not consents(service, namespace):
        msg = (
            f"Service {svc_name} is in another namespace and does not allow namespace "
            f"{namespace!r}: it needs the annotation {ALLOWED_NAMESPACES_ANNOTATION} "
            f"listing {namespace!r} (or '*'). Nothing is published."
        )
        return Plan(
            target=target,
            conditions=(
                condition("Ready", False, "CrossNamespaceRefused", msg),
                condition("ServiceFound", False, "CrossNamespaceRefused", msg),
                condition("Rendered", None, "NotAttempted", "nothing to render"),
            ),
            warnings=(("CrossNamespaceRefused", msg),),
        )

    slice_list = list(slices)
    cluster_ips: tuple[str, ...] = ()
    service_config = build_service_config(target.load_balancing, target.service_config)
    if service is None:
        found = condition("ServiceFound", False, "ServiceNotFound", f"Service {svc_name} not found")
        ref = TargetRef(target.service, target.service_namespace, port=target.port)
        endpoints: tuple[Endpoint, ...] = ()
        warnings: tuple[tuple[str, str], ...] = (
            ("ServiceNotFound", f"Service {svc_name} not found; publishing no endpoints"),
        )
    else:
        try:
            port = resolve_port(service, target.port)
        except PortError as exc:
            msg = str(exc)
            return Plan(
                target=target,
                conditions=(
                    condition("Ready", False, "PortNotFound", msg),
                    condition("ServiceFound", True, "PortNotFound", msg),
                    condition("Rendered", None, "NotAttempted", "nothing to render"),
                ),
                warnings=(("PortNotFound", msg),),
            )
        family = pick_family(service, slice_list, target.address_family)
        endpoints = build_endpoints(slice_list, port, family, target.include_terminating)
        cluster_ips = tuple(
            ip for ip in service.get("clusterIPs", []) if (":" in ip) == (family == "IPv6")
        )
        ref = TargetRef(
            target.service,
            target.service_namespace,
            port=target.port,
            port_name=port.name,
            port_number=port.number,
        )
        found = condition(
            "ServiceFound", True, "ServiceFound", f"Service {svc_name} port {port.number}"
        )
        warnings = ()

    snapshot = Snapshot(
        target=ref,
        revision=next_revision(previous, endpoints),
        endpoints=endpoints,
        service_config=service_config,
        cluster_ips=cluster_ips,
    )
    try:
        rendered = render_templates(
            target.templates, template_context(snapshot, target.name, target.namespace)
        )
        data = build_data(snapshot, rendered)
    except RenderError as exc:
        msg = str(exc)
        return Plan(
            target=target,
            snapshot=snapshot,
            conditions=(
                condition(
                    "Ready", False, "RenderFailed", f"the last good ConfigMap is kept: {msg}"
                ),
                found,
                condition("Rendered", False, exc.reason, msg),
            ),
            warnings=(*warnings, (exc.reason, msg)),
        )
    ready = len(snapshot.ready_endpoints)
    return Plan(
        target=target,
        snapshot=snapshot,
        data=data,
        conditions=(
            condition(
                "Ready",
                True,
                "Published",
                f"{ready} of {len(endpoints)} endpoints ready, revision {snapshot.revision}",
            ),
            found,
            condition("Rendered", True, "Rendered", f"{len(data)} keys"),
        ),
        warnings=warnings,
    )
