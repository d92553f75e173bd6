"""Spec parsing, conditions and the reconcile plan: pure."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Mapping
from typing import Any

import pytest

from kuberesolver.core.snapshot import ENDPOINTS_KEY, Endpoint, decode, encode
from kuberesolver.operator.logic.reconcile import (
    InvalidSpec,
    Plan,
    PortNotFound,
    Publish,
    Published,
    Rendered,
    RenderFailed,
    Report,
    ServiceState,
    WriteFailed,
    Written,
    baseline,
    consents,
    next_revision,
    plan,
    render,
    report,
)
from kuberesolver.operator.logic.render import RenderError, render_in_process
from kuberesolver.operator.logic.spec import SpecError, parse_spec
from kuberesolver.operator.logic.status import (
    build_status,
    condition,
    merge_conditions,
    status_changed,
    summary_only,
)
from kuberesolver.operator.settings import Settings, SettingsError
from tests.operator._views import greeter_service, slices

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
T1 = T0 + datetime.timedelta(minutes=5)


def service(ns: str = "ns", **annotations: str) -> Any:
    return greeter_service(ns, annotations)


# --- spec --------------------------------------------------------------------------------------


def test_spec_defaults() -> None:
    t = parse_spec("gt", "ns", {"service": "greeter"})
    assert (t.service, t.service_namespace, t.port, t.configmap_name) == ("greeter", "ns", "", "gt")
    assert (t.load_balancing, t.include_terminating, t.address_family) == ("round_robin", False, "")
    assert not t.cross_namespace
    assert t.service_key == ("ns", "greeter")
    assert parse_spec("gt", "ns", {"service": "g", "port": "8080"}).port == 8080
    assert parse_spec("gt", "ns", {"service": "g", "serviceNamespace": "other"}).cross_namespace


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({}, "spec.service"),
        ({"service": "Bad_Name"}, "spec.service"),
        ({"service": "g", "port": 0}, "1..65535"),
        ({"service": "g", "port": 70000}, "1..65535"),
        ({"service": "g", "port": True}, "port name or number"),
        ({"service": "g", "port": "Not A Name"}, "port name or number"),
        ({"service": "g", "loadBalancing": "least_request"}, "spec.loadBalancing"),
        ({"service": "g", "addressFamily": "IPv5"}, "spec.addressFamily"),
        ({"service": "g", "includeTerminating": "yes"}, "includeTerminating"),
        ({"service": "g", "serviceConfig": "x"}, "serviceConfig"),
        ({"service": "g", "templates": {"a b": "x"}}, "not a valid ConfigMap key"),
        ({"service": "g", "templates": {"service-config.json": "x"}}, "reserved"),
        ({"service": "g", "templates": {"k": 1}}, "must be a string"),
        ({"service": "g", "templates": {"..x": "1"}}, "not a valid ConfigMap key"),
        ({"service": "g", "configMapName": "a..b"}, "DNS subdomain"),
        ({"service": "g", "configMapName": "-a"}, "DNS subdomain"),
        ({"service": "g", "serviceConfig": {"loadBalancingConfig": "round_robin"}}, "list of"),
        ({"service": "g", "serviceConfig": {"loadBalancingConfig": ["round_robin"]}}, "list of"),
        ({"service": "g", "serviceConfig": {"loadBalancingConfig": []}}, "list of"),
    ],
)
def test_spec_errors(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_spec("gt", "ns", spec)


# --- status ------------------------------------------------------------------------------------


def test_conditions_keep_transition_time_while_status_holds() -> None:
    first = merge_conditions([], [condition("Ready", True, "Published", "a")], 1, T0)
    second = merge_conditions(first, [condition("Ready", True, "Published", "b")], 2, T1)
    assert (
        second[0]["lastTransitionTime"] == first[0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    )
    assert second[0]["message"] == "b"
    assert second[0]["observedGeneration"] == 2
    third = merge_conditions(second, [condition("Ready", False, "RenderFailed")], 2, T1)
    assert third[0]["lastTransitionTime"] == "2026-01-01T00:05:00Z"
    order = merge_conditions(
        [],
        [
            condition("Rendered", None, "x"),
            condition("Ready", True, "y"),
            condition("ServiceFound", True, "z"),
        ],
        1,
        T0,
    )
    assert [c["type"] for c in order] == ["Ready", "ServiceFound", "Rendered"]
    assert order[2]["status"] == "Unknown"


def test_status_counts_keep_old_values_when_unknown() -> None:
    old = {"readyEndpoints": 3, "totalEndpoints": 4, "revision": 7, "lastUpdateTime": "then"}
    st = build_status(
        old, [], generation=2, now=T1, configmap_name="cm",
        ready_endpoints=None, total_endpoints=None, revision=None, updated=False,
    )  # fmt: skip
    assert (st["readyEndpoints"], st["totalEndpoints"], st["revision"]) == (3, 4, 7)
    assert st["lastUpdateTime"] == "then"
    st2 = build_status(
        old, [], generation=2, now=T1, configmap_name="cm",
        ready_endpoints=1, total_endpoints=1, revision=8, updated=True,
    )  # fmt: skip
    assert st2["lastUpdateTime"] == "2026-01-01T00:05:00Z"
    assert status_changed(old, st2)
    assert not status_changed({**old, **st}, st)


def test_summary_changes_may_wait_state_changes_may_not() -> None:
    def status(ready: int, reason: str = "Published", generation: int = 1, cm: str = "cm") -> Any:
        return build_status(
            {}, [condition("Ready", ready > 0, reason, f"{ready} ready"),
                 condition("ServiceFound", True, "ServiceFound")],
            generation=generation, now=T1, configmap_name=cm,
            ready_endpoints=ready, total_endpoints=ready, revision=ready, updated=True,
        )  # fmt: skip

    base = status(3)
    assert summary_only(base, status(5))  # counts, revision, message: a summary
    assert summary_only(base, base)
    assert not summary_only(base, status(0, "NoReadyEndpoints"))  # Ready flips
    assert not summary_only(base, status(3, "Other"))  # a reason
    assert not summary_only(base, status(3, generation=2))  # a new generation
    assert not summary_only(base, status(3, cm="other"))  # another ConfigMap
    assert not summary_only({}, base)  # the first status


# --- plan ----------------------------------------------------------------------------------------


def test_revision_changes_exactly_when_endpoints_change() -> None:
    a = (Endpoint("10.0.0.1", 1),)
    assert next_revision(None, a) == 1
    assert next_revision(Published(5, a), a) == 5
    assert next_revision(Published(5, a), ()) == 6
    assert next_revision(Published(0, a), a) == 1


def _rendered(p: Plan) -> Rendered | RenderFailed:
    assert isinstance(p, Publish)
    return asyncio.run(render(p, render_in_process))


def _report(p: Plan, written: Written | WriteFailed | None = None, kept: bool = True) -> Report:
    rendered = _rendered(p) if isinstance(p, Publish) else None
    written = written or Written(True)
    return report(p, rendered, written if isinstance(rendered, Rendered) else None, kept=kept)


def test_plan_publishes_the_snapshot() -> None:
    p = plan(
        "gt",
        "ns",
        {"service": "greeter", "port": "grpc"},
        service(),
        slices("10.0.0.2", "10.0.0.1"),
        None,
    )
    assert isinstance(p, Publish)
    assert p.service is ServiceState.FOUND
    r = _rendered(p)
    assert isinstance(r, Rendered)
    snap = decode(r.data[ENDPOINTS_KEY])
    assert snap == p.snapshot
    assert [e.hostport for e in snap.endpoints] == ["10.0.0.1:50051", "10.0.0.2:50051"]
    assert (snap.target.port, snap.target.port_name, snap.target.port_number) == (
        "grpc",
        "grpc",
        8080,
    )
    assert snap.revision == 1
    rep = _report(p)
    assert [c.status for c in rep.conditions] == ["True", "True", "True"]
    assert rep.current == p.snapshot
    assert rep.ready_count == 2
    assert rep.ready.message == "2 of 2 endpoints ready, revision 1"
    same = slices("10.0.0.1", "10.0.0.2")
    previous = Published(snap.revision, snap.endpoints)
    again = plan("gt", "ns", {"service": "greeter", "port": "grpc"}, service(), same, previous)
    assert _rendered(again) == r  # byte-identical when nothing changed


def test_ready_means_a_current_snapshot_with_a_ready_endpoint() -> None:
    spec = {"service": "greeter"}
    # No endpoint ready: published, but not Ready.
    none_ready = plan("gt", "ns", spec, service(), [], None)
    rep = _report(none_ready)
    assert (rep.ready.status, rep.ready.reason) == ("False", "NoReadyEndpoints")
    assert rep.current is not None
    # Ready endpoints, but the write failed: not Ready, and nothing claimed as published.
    ok = plan("gt", "ns", spec, service(), slices("10.0.0.1"), None)
    failed = _report(ok, WriteFailed("WriteFailed", "403 forbidden", retry=True), kept=False)
    assert (failed.ready.status, failed.ready.reason) == ("False", "WriteFailed")
    assert failed.ready.message == "403 forbidden; nothing is published yet"
    assert failed.current is None
    kept = _report(ok, WriteFailed("WriteFailed", "403 forbidden", retry=True), kept=True)
    assert kept.ready.message == "403 forbidden; the last good ConfigMap is kept"
    assert _report(ok).ready.status == "True"
    # A 422: the apiserver refuses the object; reported, and not retried with backoff.
    refused = WriteFailed("WriteRefused", "the apiserver refuses ConfigMap ns/x: 422", retry=False)
    rep = _report(ok, refused, kept=True)
    assert (rep.ready.reason, rep.error_kind) == ("WriteRefused", "api")
    assert ("ConfigMapNotPublished", refused.message) in rep.warnings


def test_plan_missing_service_is_an_empty_snapshot() -> None:
    p = plan("gt", "ns", {"service": "greeter"}, None, [], Published(4, (Endpoint("10.0.0.1", 1),)))
    assert isinstance(p, Publish)
    assert p.service is ServiceState.NOT_FOUND
    assert p.snapshot.endpoints == ()
    assert p.snapshot.revision == 5
    rep = _report(p)
    by = {c.type: c for c in rep.conditions}
    assert (by["ServiceFound"].status, by["ServiceFound"].reason) == ("False", "ServiceNotFound")
    assert (by["Ready"].status, by["Ready"].reason) == ("False", "ServiceNotFound")
    assert rep.warnings


def test_plan_cross_namespace_needs_consent_and_withdrawn_consent_empties() -> None:
    spec = {"service": "greeter", "serviceNamespace": "other"}
    before = Published(3, (Endpoint("10.0.0.1", 50051),))
    refused = plan("gt", "ns", spec, service("other"), slices("10.0.0.1"), before)
    # An empty snapshot at once, as for a missing Service: other pods' IPs never linger.
    assert isinstance(refused, Publish)
    assert refused.service is ServiceState.REFUSED
    assert refused.snapshot.endpoints == ()
    assert refused.snapshot.revision == 4
    rep = _report(refused)
    assert rep.conditions[1].reason == "CrossNamespaceRefused"
    assert (rep.ready.status, rep.ready.reason) == ("False", "CrossNamespaceRefused")
    assert rep.error_kind == "refused"
    # A missing Service elsewhere says only "not found": existence is not leaked either way.
    missing = plan("gt", "ns", spec, None, [], None)
    assert isinstance(missing, Publish)
    assert missing.snapshot.endpoints == ()
    for value in ("ns", "a, ns ,b", "*"):
        svc = service("other", **{"kuberesolver.io/allowed-namespaces": value})
        assert consents(svc, "ns")
        granted = plan("gt", "ns", spec, svc, slices("10.0.0.1"), None)
        assert isinstance(granted, Publish)
        assert len(granted.snapshot.endpoints) == 1
    assert not consents(service("other", **{"kuberesolver.io/allowed-namespaces": "nsx"}), "ns")
    assert consents(service("ns"), "ns")


def test_plan_bad_template_keeps_last_good() -> None:
    p = plan(
        "gt", "ns", {"service": "greeter", "templates": {"x": "{{ nope }}"}}, service(), [], None
    )
    r = _rendered(p)
    assert isinstance(r, RenderFailed)
    rep = report(p, r, None, kept=True)
    by = {c.type: c for c in rep.conditions}
    assert (by["Rendered"].status, by["Rendered"].reason) == ("False", "UndefinedVariable")
    assert (by["Ready"].status, by["Ready"].reason) == ("False", "RenderFailed")
    assert by["Ready"].message.endswith("; the last good ConfigMap is kept")
    assert report(p, r, None, kept=False).ready.message.endswith("; nothing is published yet")
    assert ("UndefinedVariable", "x: 'nope' is undefined") in rep.warnings
    assert rep.current is None


def test_the_renderer_is_injected_and_skipped_without_templates() -> None:
    calls: list[Mapping[str, str]] = []

    async def fake_pool(templates: Mapping[str, str], context: Mapping[str, Any]) -> dict[str, str]:
        calls.append(templates)
        if "slow" in templates:
            raise RenderError("RenderTimeout", "the render took longer than 2 s", "slow")
        return {k: f"{context['revision']}" for k in templates}

    plain_plan = plan("gt", "ns", {"service": "greeter"}, service(), [], None)
    assert isinstance(plain_plan, Publish)
    assert isinstance(asyncio.run(render(plain_plan, fake_pool)), Rendered)
    assert calls == []
    spec = {"service": "greeter", "templates": {"a": "x"}}
    p = plan("gt", "ns", spec, service(), [], None)
    assert isinstance(p, Publish)
    r = asyncio.run(render(p, fake_pool))
    assert isinstance(r, Rendered)
    assert r.data["a"] == "1"
    slow = plan("gt", "ns", {"service": "greeter", "templates": {"slow": "x"}}, service(), [], None)
    assert isinstance(slow, Publish)
    failed = asyncio.run(render(slow, fake_pool))
    assert failed == RenderFailed("RenderTimeout", "slow: the render took longer than 2 s")


def test_plan_invalid_spec_and_unknown_port() -> None:
    p = plan("gt", "ns", {"service": "greeter", "port": 0}, service(), [], None)
    assert isinstance(p, InvalidSpec)
    assert _report(p).ready.reason == "InvalidSpec"
    q = plan("gt", "ns", {"service": "greeter", "port": "http"}, service(), [], None)
    assert isinstance(q, PortNotFound)
    rep = _report(q, kept=False)
    assert rep.ready.reason == "PortNotFound"
    assert rep.ready.message.endswith("; nothing is published yet")
    assert rep.current is None


# --- settings ----------------------------------------------------------------------------------


def test_settings_argument_then_environment_then_default() -> None:
    s = Settings.resolve(environ={})
    assert (str(s.write_budget), s.metrics_port, s.resync_s) == ("5/1500ms", 0, 300.0)
    assert (s.lease_duration_s, s.lease_retry_s, s.lease_renew_deadline_s) == (8, 2, 6.0)
    assert (s.lease_name, s.lease_namespace) == ("kuberesolver-operator", "kuberesolver-system")
    assert s.identity  # host name and pid
    env = {
        "KUBERESOLVER_WRITE_BUDGET": "1/50ms",
        "KUBERESOLVER_METRICS_PORT": "9090",
        "KUBERESOLVER_IDENTITY": "pod-a",
        "KUBERESOLVER_LEASE_DURATION_S": "15",
    }
    s = Settings.resolve(environ=env)
    assert (str(s.write_budget), s.metrics_port, s.identity, s.lease_duration_s) == (
        "1/50ms",
        9090,
        "pod-a",
        15,
    )
    assert str(Settings.resolve(write_budget="1/10ms", environ=env).write_budget) == "1/10ms"
    with pytest.raises(SettingsError, match="at least twice"):
        Settings.resolve(environ={"KUBERESOLVER_LEASE_DURATION_S": "3"})
    for bad in ("x", "-1", "1.5", "70000"):
        with pytest.raises(SettingsError, match="KUBERESOLVER_METRICS_PORT"):
            Settings.resolve(environ={"KUBERESOLVER_METRICS_PORT": bad})


def test_revision_baseline_after_reading_the_configmap() -> None:
    a = (Endpoint("10.0.0.1", 1),)
    b = (Endpoint("10.0.0.2", 1),)
    assert baseline(None, None) is None
    assert baseline(None, None, 4) == Published(4, ())
    assert baseline(None, Published(3, a)) == Published(3, a)  # a restart
    assert baseline(None, Published(3, a), 5) == Published(5, a)  # status ahead of a stale CM
    own = Published(3, a)
    assert baseline(own, None, 3) == own  # unreadable CM: what we wrote ourselves
    assert baseline(own, Published(3, a)) == own
    assert baseline(own, Published(4, b)) == Published(4, b)  # another replica was ahead
    # The same revision with other endpoints (a lost answer, a hand edit): trust the
    # ConfigMap, so that the next change gets a new number.
    assert baseline(own, Published(3, b)) == Published(3, b)
    assert next_revision(baseline(own, Published(3, b)), a) == 4
    assert baseline(own, Published(2, b)) == own  # older: ignored


# --- the ClusterIP fallback -------------------------------------------------------------------


def test_plan_puts_the_cluster_ips_of_the_family_in_the_snapshot() -> None:
    svc = greeter_service(clusterIP="10.96.0.10", clusterIPs=["10.96.0.10", "fd00:96::10"])
    the_plan = plan(
        "greeter", "ns", {"service": "greeter", "port": "grpc"}, svc, slices("10.244.0.1"), None
    )
    assert isinstance(the_plan, Publish)
    assert the_plan.snapshot.cluster_ips == ("10.96.0.10",)
    assert decode(encode(the_plan.snapshot)).cluster_ips == ("10.96.0.10",)


def test_a_headless_service_has_no_cluster_ips() -> None:
    svc = greeter_service(clusterIP="None", clusterIPs=["None"])
    assert "clusterIPs" not in svc
    the_plan = plan("greeter", "ns", {"service": "greeter"}, svc, slices("10.244.0.1"), None)
    assert isinstance(the_plan, Publish)
    assert the_plan.snapshot.cluster_ips == ()
