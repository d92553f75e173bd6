"""The decision for one GrpcTarget: two pure steps around two effects.

1. :func:`plan` (pure): from the spec, the Service, its slices and what was
   published before, a typed :data:`Plan`: :class:`InvalidSpec`,
   :class:`PortNotFound` (nothing is published; the last good ConfigMap
   stays) or :class:`Publish` (a snapshot; empty when the Service is missing,
   withholds its consent, or is in a namespace the operator does not watch).
2. Rendering (an effect, async, injected: a worker-process pool in
   production): :func:`render` turns a :class:`Publish` into
   :class:`Rendered` data or :class:`RenderFailed`.
3. The handler writes the ConfigMap (an effect) and gets a :data:`Written`.
4. :func:`report` (pure): the conditions, the Warning Events and the counts to
   put in the status, from the typed values above. No step reads another's
   condition reasons.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

from kuberesolver.core.endpointslices import (
    EndpointCache,
    PortError,
    ServiceView,
    SliceView,
    build_endpoints,
    pick_family,
    resolve_port,
)
from kuberesolver.core.service_config import unapplied_parts
from kuberesolver.core.snapshot import EncodedEndpoints, Endpoint, Snapshot, TargetRef
from kuberesolver.operator.logic.configmap import build_data
from kuberesolver.operator.logic.render import RenderError, build_service_config, template_context
from kuberesolver.operator.logic.spec import (
    ALLOWED_NAMESPACES_ANNOTATION,
    SpecError,
    TargetSpec,
    parse_spec,
)
from kuberesolver.operator.logic.status import Condition, condition

__all__ = [
    "InvalidSpec",
    "Plan",
    "PortNotFound",
    "Publish",
    "Published",
    "RenderFailed",
    "Rendered",
    "Renderer",
    "Report",
    "ServiceState",
    "WriteFailed",
    "Written",
    "baseline",
    "consents",
    "next_revision",
    "plan",
    "render",
    "report",
]

Renderer: TypeAlias = Callable[[Mapping[str, str], Mapping[str, Any]], Awaitable[dict[str, str]]]
"""``await renderer(templates, context)``: rendered keys, or :class:`RenderError`."""


@dataclass(frozen=True, slots=True)
class Published:
    """What the ConfigMap held (or the status said) last time."""

    revision: int
    endpoints: tuple[Endpoint, ...]


class ServiceState(enum.Enum):
    """Why the snapshot holds what it holds; the value is the condition reason."""

    FOUND = "ServiceFound"
    NOT_FOUND = "ServiceNotFound"
    REFUSED = "CrossNamespaceRefused"
    NOT_WATCHED = "NamespaceNotWatched"


@dataclass(frozen=True, slots=True)
class InvalidSpec:
    message: str


@dataclass(frozen=True, slots=True)
class PortNotFound:
    target: TargetSpec
    message: str


@dataclass(frozen=True, slots=True)
class Publish:
    """A snapshot to render and publish."""

    target: TargetSpec
    snapshot: Snapshot
    service: ServiceState
    service_message: str


Plan: TypeAlias = InvalidSpec | PortNotFound | Publish


@dataclass(frozen=True, slots=True)
class Rendered:
    data: dict[str, str]
    """The whole ConfigMap data: snapshot, service config and rendered keys."""


@dataclass(frozen=True, slots=True)
class RenderFailed:
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class Written:
    """The ConfigMap holds the rendered data now (``wrote``: this reconcile changed it)."""

    wrote: bool


@dataclass(frozen=True, slots=True)
class WriteFailed:
    """The ConfigMap does not hold the data. ``reason`` is the Ready reason."""

    reason: str
    message: str
    retry: bool
    """Whether to try again with backoff (a 422 or a foreign ConfigMap is not retried)."""


@dataclass(frozen=True, slots=True)
class Report:
    conditions: tuple[Condition, ...]
    warnings: frozenset[tuple[str, str]]
    """``(reason, message)`` of the problems worth a Warning Event."""
    current: Snapshot | None
    """The snapshot the ConfigMap now holds, when this reconcile got it there."""
    error_kind: str | None
    """The ``kind`` label of the error counter, if any."""
    ready_count: int = 0
    """How many of ``current``'s endpoints are ready (0 without ``current``)."""

    @property
    def ready(self) -> Condition:
        return self.conditions[0]


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
    cache: EndpointCache | None = None,
    *,
    watched: Collection[str] = (),
) -> Plan:
    """What to publish; ``cache`` (the target's own) spares rebuilding unchanged endpoints.

    ``watched``: in namespaced mode, the only namespaces watched (empty: all). A
    Service elsewhere is never seen, so an empty snapshot is published, and
    the reason says so.
    """
    try:
        target = parse_spec(name, namespace, raw_spec)
    except SpecError as exc:
        return InvalidSpec(str(exc))

    svc_name = f"{target.service_namespace}/{target.service}"
    endpoints: tuple[Endpoint, ...] = ()
    cluster_ips: tuple[str, ...] = ()
    ref = TargetRef(target.service, target.service_namespace, port=target.port)
    if watched and target.service_namespace not in watched:
        state = ServiceState.NOT_WATCHED
        message = (
            f"Service {svc_name} is in namespace {target.service_namespace!r}, which this "
            f"operator does not watch (it watches {', '.join(sorted(watched))}: "
            "KUBERESOLVER_WATCH_NAMESPACES, the chart's watchNamespaces)"
        )
    elif service is None:
        state, message = ServiceState.NOT_FOUND, f"Service {svc_name} not found"
    elif target.cross_namespace and not consents(service, namespace):
        state = ServiceState.REFUSED
        message = (
            f"Service {svc_name} is in another namespace and does not allow namespace "
            f"{namespace!r}: it needs the annotation {ALLOWED_NAMESPACES_ANNOTATION} "
            f"listing {namespace!r} (or '*')"
        )
    else:
        try:
            port = resolve_port(service, target.port)
        except PortError as exc:
            return PortNotFound(target, str(exc))
        slice_list = list(slices)
        family = pick_family(service, slice_list, target.address_family)
        endpoints = build_endpoints(slice_list, port, family, target.include_terminating, cache)
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
        state, message = ServiceState.FOUND, f"Service {svc_name} port {port.number}"
    snapshot = Snapshot(
        target=ref,
        revision=next_revision(previous, endpoints),
        endpoints=endpoints,
        service_config=build_service_config(target.load_balancing, target.service_config),
        cluster_ips=cluster_ips,
        outlier_detection=target.outlier_detection,
    )
    return Publish(target, snapshot, state, message)


def compose(
    publish: Publish, rendered: Mapping[str, str], encoded: EncodedEndpoints | None = None
) -> Rendered | RenderFailed:
    """The ConfigMap data from the rendered keys (pure; the size limit is checked here)."""
    try:
        return Rendered(build_data(publish.snapshot, rendered, encoded))
    except RenderError as exc:
        return RenderFailed(exc.reason, str(exc))


async def render(
    publish: Publish, renderer: Renderer, encoded: EncodedEndpoints | None = None
) -> Rendered | RenderFailed:
    """Render the target's templates with ``renderer`` (skipped when there are none).

    ``encoded``: the target's endpoints already encoded (see :func:`.snapshot.encode`).
    """
    templates = publish.target.templates
    if not templates:
        return compose(publish, {}, encoded)
    context = template_context(publish.snapshot, publish.target.name, publish.target.namespace)
    try:
        rendered = await renderer(templates, context)
    except RenderError as exc:
        return RenderFailed(exc.reason, str(exc))
    return compose(publish, rendered, encoded)


def report(
    the_plan: Plan,
    rendered: Rendered | RenderFailed | None,
    written: Written | WriteFailed | None,
    *,
    kept: bool,
) -> Report:
    """Conditions, warnings and counts from what happened.

    ``kept``: whether a ConfigMap of this target exists (the last good one
    stays when nothing new is written). Ready is True only when the
    ConfigMap holds the current snapshot and it has a ready endpoint.
    """
    keeps = "the last good ConfigMap is kept" if kept else "nothing is published yet"
    if isinstance(the_plan, InvalidSpec):
        msg = the_plan.message
        return Report(
            (
                condition("Ready", False, "InvalidSpec", f"{msg}; {keeps}"),
                condition("ServiceFound", None, "InvalidSpec", msg),
                condition("Rendered", False, "InvalidSpec", msg),
            ),
            frozenset({("InvalidSpec", msg)}),
            None,
            "spec",
        )
    if isinstance(the_plan, PortNotFound):
        msg = the_plan.message
        return Report(
            (
                condition("Ready", False, "PortNotFound", f"{msg}; {keeps}"),
                condition("ServiceFound", True, "PortNotFound", msg),
                condition("Rendered", None, "NotAttempted", "nothing to render"),
            ),
            frozenset({("PortNotFound", msg)}),
            None,
            "spec",
        )
    state = the_plan.service
    found = condition(
        "ServiceFound", state is ServiceState.FOUND, state.value, the_plan.service_message
    )
    warnings: set[tuple[str, str]] = set()
    # The clients of the ConfigMap apply methodConfig timeouts as per-call deadlines.
    unapplied = unapplied_parts(the_plan.snapshot.service_config)
    if unapplied:
        warnings.add(
            (
                "ServiceConfigNotApplied",
                "kuberesolver clients do not apply these serviceConfig parts: "
                + "; ".join(unapplied),
            )
        )
    if state is not ServiceState.FOUND:
        warnings.add((state.value, f"{the_plan.service_message}; publishing no endpoints"))
    if isinstance(rendered, RenderFailed) or rendered is None:
        reason = rendered.reason if rendered is not None else "NotAttempted"
        msg = rendered.message if rendered is not None else "not rendered"
        warnings.add((reason, msg))
        return Report(
            (
                condition("Ready", False, "RenderFailed", f"{msg}; {keeps}"),
                found,
                condition("Rendered", False, reason, msg),
            ),
            frozenset(warnings),
            None,
            "render",
        )
    rendered_ok = condition("Rendered", True, "Rendered", f"{len(rendered.data)} keys")
    if isinstance(written, WriteFailed) or written is None:
        reason = written.reason if written is not None else "NotWritten"
        msg = written.message if written is not None else "not written"
        warnings.add(("ConfigMapNotPublished", msg))
        return Report(
            (condition("Ready", False, reason, f"{msg}; {keeps}"), found, rendered_ok),
            frozenset(warnings),
            None,
            "conflict" if reason == "ConfigMapConflict" else "api",
        )
    snap = the_plan.snapshot
    ready_count, total = len(snap.ready_endpoints), len(snap.endpoints)
    counts = f"{ready_count} of {total} endpoints ready, revision {snap.revision}"
    if state is not ServiceState.FOUND:
        ready = condition(
            "Ready",
            False,
            state.value,
            f"{the_plan.service_message}; an empty snapshot is published",
        )
    elif ready_count == 0:
        ready = condition("Ready", False, "NoReadyEndpoints", f"no endpoint is ready: {counts}")
    else:
        ready = condition("Ready", True, "Published", counts)
    return Report(
        (ready, found, rendered_ok),
        frozenset(warnings),
        snap,
        "refused" if state is ServiceState.REFUSED else None,
        ready_count,
    )
