"""Spec parsing, conditions and the reconcile plan: pure."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from kuberesolver.endpointslices import service_view, slice_view
from kuberesolver.operator.reconcile import Published, baseline, consents, next_revision, plan
from kuberesolver.operator.settings import Settings, SettingsError
from kuberesolver.operator.spec import SpecError, parse_spec
from kuberesolver.operator.status import build_status, condition, merge_conditions, status_changed
from kuberesolver.snapshot import ENDPOINTS_KEY, Endpoint, decode

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
T1 = T0 + datetime.timedelta(minutes=5)


def service(ns: str = "ns", **annotations: str) -> Any:
    return service_view(
        {
            "metadata": {"name": "greeter", "namespace": ns, "annotations": annotations},
            "spec": {"ports": [{"name": "grpc", "port": 8080, "targetPort": 50051}]},
        }
    )


def slices(*ips: str) -> list[Any]:
    return [
        slice_view(
            {
                "metadata": {"name": "s"},
                "addressType": "IPv4",
                "ports": [{"name": "grpc", "port": 50051, "protocol": "TCP"}],
                "endpoints": [{"addresses": [ip]} for ip in ips],
            }
        )
    ]


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


# --- plan ----------------------------------------------------------------------------------------


def test_revision_changes_exactly_when_endpoints_change() -> None:
    a = (Endpoint("10.0.0.1", 1),)
    assert next_revision(None, a) == 1
    assert next_revision(Published(5, a), a) == 5
    assert next_revision(Published(5, a), ()) == 6
    assert next_revision(Published(0, a), a) == 1


def test_plan_publishes_the_snapshot() -> None:
    p = plan(
        "gt",
        "ns",
        {"service": "greeter", "port": "grpc"},
        service(),
        slices("10.0.0.2", "10.0.0.1"),
        None,
    )
    assert p.publishes
    assert p.data is not None
    assert p.snapshot is not None
    snap = decode(p.data[ENDPOINTS_KEY])
    assert snap == p.snapshot
    assert [e.hostport for e in snap.endpoints] == ["10.0.0.1:50051", "10.0.0.2:50051"]
    assert (snap.target.port, snap.target.port_name, snap.target.port_number) == (
        "grpc",
        "grpc",
        8080,
    )
    assert snap.revision == 1
    assert [c.status for c in p.conditions] == ["True", "True", "True"]
    same = slices("10.0.0.1", "10.0.0.2")
    previous = Published(snap.revision, snap.endpoints)
    again = plan("gt", "ns", {"service": "greeter", "port": "grpc"}, service(), same, previous)
    assert again.data == p.data  # byte-identical when nothing changed


def test_plan_missing_service_is_an_empty_snapshot() -> None:
    p = plan("gt", "ns", {"service": "greeter"}, None, [], Published(4, (Endpoint("10.0.0.1", 1),)))
    assert p.publishes
    assert p.snapshot is not None
    assert p.snapshot.endpoints == ()
    assert p.snapshot.revision == 5
    by = {c.type: c for c in p.conditions}
    assert (by["ServiceFound"].status, by["ServiceFound"].reason) == ("False", "ServiceNotFound")
    assert p.warnings


def test_plan_cross_namespace_needs_consent() -> None:
    spec = {"service": "greeter", "serviceNamespace": "other"}
    refused = plan("gt", "ns", spec, service("other"), slices("10.0.0.1"), None)
    assert not refused.publishes
    assert refused.conditions[1].reason == "CrossNamespaceRefused"
    # A missing Service elsewhere is refused too: existence is not leaked.
    assert not plan("gt", "ns", spec, None, [], None).publishes
    for value in ("ns", "a, ns ,b", "*"):
        svc = service("other", **{"kuberesolver.io/allowed-namespaces": value})
        assert consents(svc, "ns")
        assert plan("gt", "ns", spec, svc, slices("10.0.0.1"), None).publishes
    assert not consents(service("other", **{"kuberesolver.io/allowed-namespaces": "nsx"}), "ns")
    assert consents(service("ns"), "ns")


def test_plan_bad_template_keeps_last_good() -> None:
    p = plan(
        "gt", "ns", {"service": "greeter", "templates": {"x": "{{ nope }}"}}, service(), [], None
    )
    assert not p.publishes
    by = {c.type: c for c in p.conditions}
    assert (by["Rendered"].status, by["Rendered"].reason) == ("False", "UndefinedVariable")
    assert by["Ready"].status == "False"
    assert ("UndefinedVariable", "x: 'nope' is undefined") in p.warnings


def test_plan_invalid_spec_and_unknown_port() -> None:
    p = plan("gt", "ns", {"service": "greeter", "port": 0}, service(), [], None)
    assert p.target is None
    assert p.conditions[0].reason == "InvalidSpec"
    q = plan("gt", "ns", {"service": "greeter", "port": "http"}, service(), [], None)
    assert not q.publishes
    assert q.conditions[0].reason == "PortNotFound"


# --- settings ----------------------------------------------------------------------------------


def test_settings_argument_then_environment_then_default() -> None:
    s = Settings.resolve(environ={})
    assert (s.debounce_ms, s.metrics_port, s.resync_s, s.peering_lifetime_s) == (300, 0, 300.0, 60)
    assert s.debounce_s == 0.3
    env = {
        "KUBERESOLVER_DEBOUNCE_MS": "50",
        "KUBERESOLVER_METRICS_PORT": "9090",
        "KUBERESOLVER_PEERING_PRIORITY": "7",
    }
    s = Settings.resolve(environ=env)
    assert (s.debounce_ms, s.metrics_port, s.peering_priority) == (50, 9090, 7)
    assert Settings.resolve(debounce_ms=10, environ=env).debounce_ms == 10
    a, b = Settings.resolve(environ={}), Settings.resolve(environ={})
    assert a.peering_priority >= 1
    assert (a.peering_priority, b.peering_priority) != (0, 0)
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
