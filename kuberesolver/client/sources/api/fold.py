"""Watch events folded into a target's endpoints: pure, no I/O.

:class:`SliceSet` keeps the compact view of every EndpointSlice of one
Service (:func:`~kuberesolver.core.endpointslices.slice_view`), keyed by slice
name: a list replaces the whole set, ADDED and MODIFIED set one slice, DELETED
removes it (never taken as its state).
:func:`build_snapshot` turns the Service, the slices and the port asked for
into a :class:`~kuberesolver.core.snapshot.Snapshot` with the operator's own code
(:mod:`kuberesolver.core.endpointslices`): every slice merged and de-duplicated,
ports mapped by the Service port's name, ``ready: null`` read as ready,
terminating endpoints left out; no slices means no endpoints.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from kuberesolver.core.endpointslices import (
    ServiceView,
    SliceView,
    build_endpoints,
    pick_family,
    resolve_port,
)
from kuberesolver.core.snapshot import Endpoint, Snapshot, TargetRef

__all__ = ["SliceSet", "build_snapshot", "requested_port", "resource_version"]


def resource_version(obj: Mapping[str, Any]) -> str:
    """``metadata.resourceVersion`` of an object or list ("" when absent)."""
    meta = obj.get("metadata") or {}
    return str(meta.get("resourceVersion") or "")


class SliceSet:
    """The current slices of one Service, as compact views."""

    def __init__(self) -> None:
        self._slices: dict[str, SliceView] = {}

    def __len__(self) -> int:
        return len(self._slices)

    @property
    def views(self) -> list[SliceView]:
        return [self._slices[name] for name in sorted(self._slices)]

    def replace(self, views: Iterable[SliceView]) -> None:
        """The state of a fresh list (views of :func:`slice_view`): slices not in it are gone."""
        self._slices = {view["name"]: view for view in views}

    def apply(self, event_type: str, view: SliceView) -> bool:
        """Apply one watch event's view; whether the set changed. Unknown types change nothing."""
        name = view["name"]
        if event_type == "DELETED":
            return self._slices.pop(name, None) is not None
        if event_type in ("ADDED", "MODIFIED"):
            if self._slices.get(name) == view:
                return False
            self._slices[name] = view
            return True
        return False


def requested_port(port: str) -> int | str:
    """A target's port as :func:`~kuberesolver.core.endpointslices.resolve_port` takes it."""
    return int(port) if port.isdigit() else port


def build_snapshot(
    service: ServiceView | None,
    slices: Iterable[SliceView],
    *,
    name: str,
    namespace: str,
    port: str,
    previous: Snapshot | None,
    service_config: Mapping[str, Any],
) -> Snapshot:
    """The snapshot for ``service`` now; the revision moves only when the endpoints change.

    A missing Service gives no endpoints. A port the Service does not have
    raises :class:`~kuberesolver.core.endpointslices.PortError`.
    """
    views = list(slices)
    endpoints: tuple[Endpoint, ...] = ()
    port_name, port_number = "", 0
    if service is not None:
        resolved = resolve_port(service, requested_port(port))
        port_name, port_number = resolved.name, resolved.number
        endpoints = build_endpoints(views, resolved, pick_family(service, views))
    revision = 1
    if previous is not None:
        revision = previous.revision + (previous.endpoints != endpoints)
    return Snapshot(
        target=TargetRef(
            service=name,
            namespace=namespace,
            port=requested_port(port) if port else "",
            port_name=port_name,
            port_number=port_number,
        ),
        revision=revision,
        endpoints=endpoints,
        service_config=dict(service_config),
    )
