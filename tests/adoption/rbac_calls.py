"""The API calls the operator makes, per feature: what its RBAC must grant, and no more.

Each entry names the call in the code that needs it. ``scope`` says where the
call lands: "watched" (every watched namespace, or the cluster when all are
watched), "release" (the operator's own namespace) or "cluster" (a
cluster-scoped resource). ``name`` is the one object a call is limited to,
``{full}`` standing for the release's full name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tests.adoption.chart import Grant


@dataclass(frozen=True)
class Call:
    scope: str
    group: str
    resource: str
    verbs: tuple[str, ...]
    where: str
    """The call in the code (kept next to the grant, for the reader)."""
    name: str = ""


CORE = (
    Call(
        "watched",
        "kuberesolver.io",
        "grpctargets",
        ("list", "watch"),
        "kopf's watch for handlers.grpctarget_event; xds.feed.XdsFeed._list_from_api; "
        "the webhook's informer.grpctarget_reflectors (per namespace in namespaced mode)",
    ),
    Call(
        "watched",
        "kuberesolver.io",
        "grpctargets/status",
        ("patch",),
        "status_writer.StatusWriter: Kube.patch_status (merge patch)",
    ),
    Call(
        "watched",
        "",
        "services",
        ("list", "watch"),
        "informer.service_reflectors (per namespace in namespaced mode)",
    ),
    Call("watched", "", "services", ("get",), "worker.TargetWorker: Kube.get_service"),
    Call(
        "watched",
        "discovery.k8s.io",
        "endpointslices",
        ("list", "watch"),
        "informer.service_reflectors; worker: Kube.list_service_slices",
    ),
    Call(
        "watched",
        "",
        "configmaps",
        ("get", "create", "update"),
        "worker.TargetWorker: Kube.get_configmap, create_configmap, replace_configmap",
    ),
    Call("watched", "", "events", ("create",), "Runtime.post_event: Kube.post_event"),
    Call(
        "cluster",
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        ("list", "watch"),
        "kopf's scan of CRD changes (off in namespaced mode: granted, not called)",
    ),
    Call(
        "release",
        "coordination.k8s.io",
        "leases",
        ("create",),
        "leader.LeaderElector: Kube.create_lease",
    ),
    Call(
        "release",
        "coordination.k8s.io",
        "leases",
        ("get", "update"),
        "leader.LeaderElector: Kube.get_lease, replace_lease",
        name="{full}-operator",
    ),
)
WEBHOOK_SELF_TLS = (
    Call("release", "", "secrets", ("create",), "webhook_tls.CertKeeper: Kube.create_secret"),
    Call(
        "release",
        "",
        "secrets",
        ("get", "update"),
        "webhook_tls.CertKeeper: Kube.get_secret, replace_secret",
        name="{full}-webhook-tls",
    ),
    Call(
        "cluster",
        "admissionregistration.k8s.io",
        "mutatingwebhookconfigurations",
        ("get", "patch"),
        "webhook_tls.CertKeeper: Kube.get_mutating_webhook, patch_mutating_webhook (caBundle)",
        name="{full}-mounts",
    ),
)
WEBHOOK = (
    Call(
        "watched",
        "",
        "events",
        ("create",),
        "skip_reporter.SkipReporter: Kube.post_event (InjectionSkipped, in the Pod's namespace;"
        " the webhook sees Pods of the watched namespaces only)",
    ),
)
XDS_PODS = (Call("watched", "", "pods", ("list", "watch"), "informer.pod_reflectors"),)
XDS_TOKEN_AUTH = (
    Call(
        "cluster",
        "authentication.k8s.io",
        "tokenreviews",
        ("create",),
        "xds_auth.KubeAuthorizer: create_token_review",
    ),
    Call(
        "cluster",
        "authorization.k8s.io",
        "subjectaccessreviews",
        ("create",),
        "xds_auth.KubeAuthorizer: create_subject_access_review",
    ),
)


def feature_calls(values: Mapping[str, Any]) -> tuple[Call, ...]:
    """The calls of the features ``values`` turn on (dotted keys, the chart's defaults
    for the rest)."""
    webhook = values.get("webhook.enabled", True)
    xds = values.get("xds.enabled", False)
    calls = CORE
    if webhook:
        calls += WEBHOOK
    if webhook and values.get("webhook.tls.mode", "self") == "self":
        calls += WEBHOOK_SELF_TLS
    if xds and values.get("xds.podReadiness", True):
        calls += XDS_PODS
    if xds and values.get("xds.auth", "none") == "token":
        calls += XDS_TOKEN_AUTH
    return calls


def expected_grants(
    calls: Sequence[Call], full: str, namespace: str, watched: Sequence[str]
) -> set[Grant]:
    """The grants the calls need: per watched namespace, or cluster-wide without any."""
    out: set[Grant] = set()
    for call in calls:
        if call.scope == "watched":
            scopes: Sequence[str] = watched or ["cluster"]
        elif call.scope == "release":
            scopes = [namespace]
        else:
            scopes = ["cluster"]
        name = call.name.format(full=full)
        for scope in scopes:
            out.update(Grant(scope, call.group, call.resource, v, name) for v in call.verbs)
    return out
