"""A Pod's readiness, read from the Pod before the EndpointSlice controller copies it (pure).

Why: a Pod turning Ready reaches an EndpointSlice only after
kube-controller-manager has seen the Pod, recomputed the Service's slices and
written them (a second etcd write). The operator's xDS feed can watch the Pods
too and serve the change as soon as the Pod's own status says it, a hop
earlier than any client that reads slices (Go's kuberesolver among them).

What is taken from a Pod, and only where the slice's own controller would
take the same (``EndpointSliceController.podToEndpoint`` in Kubernetes):

- only endpoints of slices that kube-controller-manager manages (label
  ``endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io``):
  a slice another controller writes says what that controller decided, and
  stays the truth;
- only an endpoint whose ``targetRef`` names the Pod and whose address is one
  of the Pod's IPs (a Pod recreated under the same name has new IPs);
- only when the Pod's ``resourceVersion`` is newer than the slice's (both are
  etcd revisions of one cluster): an older Pod view never undoes a newer slice;
- then, as the controller does: ``serving`` is the Pod's Ready condition,
  ``terminating`` is its ``deletionTimestamp``, and ``ready`` is ``serving``
  and not ``terminating``, or always true for a Service with
  ``publishNotReadyAddresses``.

Membership (which Pods a Service selects, on which port) stays the slices':
a Pod is never added, only its conditions are read earlier.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from kuberesolver.core.endpointslices import EndpointView, SliceView, resource_revision

__all__ = ["MANAGED_BY_CONTROLLER", "PodView", "overlay", "pod_view"]

MANAGED_BY_CONTROLLER: Final = "endpointslice-controller.k8s.io"
"""The ``endpointslice.kubernetes.io/managed-by`` value of kube-controller-manager's slices."""


@dataclass(frozen=True, slots=True)
class PodView:
    """What is kept of a Pod: its IPs, its readiness, and the revision that said so."""

    ips: frozenset[str]
    ready: bool
    deleting: bool
    revision: int


def pod_view(body: Mapping[str, Any]) -> PodView | None:
    """The view of a Pod; ``None`` for one without an IP (it is in no slice)."""
    meta = body.get("metadata") or {}
    status = body.get("status") or {}
    ips = {str(p.get("ip")) for p in status.get("podIPs") or [] if p.get("ip")}
    if status.get("podIP"):
        ips.add(str(status["podIP"]))
    if not ips:
        return None
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    return PodView(
        ips=frozenset(ips),
        ready=ready,
        deleting=bool(meta.get("deletionTimestamp")),
        revision=resource_revision(meta.get("resourceVersion")),
    )


def overlay(
    slices: list[SliceView], pods: Mapping[str, PodView], publish_not_ready: bool = False
) -> list[SliceView]:
    """``slices`` with each endpoint's conditions taken from its Pod where the Pod is newer.

    ``pods``: the Pods of the slices' namespace, by name. Slices it changes are
    copied; the others are returned as they are.
    """
    out: list[SliceView] = []
    for s in slices:
        if s.get("managedBy") != MANAGED_BY_CONTROLLER or not pods:
            out.append(s)
            continue
        slice_revision = s.get("revision", 0)
        endpoints: list[EndpointView] = []
        changed = False
        for ep in s["endpoints"]:
            pod = pods.get(ep["pod"] or "")
            if pod is None or pod.revision <= slice_revision or ep["address"] not in pod.ips:
                endpoints.append(ep)
                continue
            serving = pod.ready
            terminating = pod.deleting
            ready = publish_not_ready or (serving and not terminating)
            if (ep["ready"], ep["serving"], ep["terminating"]) == (ready, serving, terminating):
                endpoints.append(ep)
                continue
            endpoints.append({**ep, "ready": ready, "serving": serving, "terminating": terminating})
            changed = True
        out.append({**s, "endpoints": endpoints} if changed else s)
    return out
