"""What an operator of the operator sees: its /metrics scraped, skipped injections told to the
Pod's owner as Events, and its log lines as JSON. Real operator processes, under the
project's RBAC, against the real apiserver."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from kuberesolver._version import __version__
from testenv.netns import pod_ip
from testenv.operator_process import OperatorProcess
from testenv.wait import until
from tests.integration.operator.helpers import Namespace, ep
from tests.integration.operator.test_webhook import INJECT, create, pod, until_served

pytestmark = pytest.mark.integration


def scrape(op: OperatorProcess) -> dict[str, float]:
    """Every sample of the operator's /metrics, by its exposition key."""
    values: dict[str, float] = {}
    for line in op.metrics().splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            values[key] = float(value)
    return values


def test_metrics_have_the_process_leader_build_and_endpoints_that_sum(
    operator: OperatorProcess, ns: Namespace
) -> None:
    ns.service("svc")
    ns.make_slice("svc", "svc-1", [
        ep(pod_ip(181)), ep(pod_ip(182)), ep(pod_ip(183), ready=False),
        ep(pod_ip(184), ready=False, serving=True, terminating=True),
    ])  # fmt: skip
    ns.create_target("t", {"service": "svc", "includeTerminating": True})
    ns.wait_published("t", {pod_ip(i) for i in (181, 182, 183, 184)})

    def state(name: str) -> str:
        labels = f'namespace="{ns.name}",state="{name}",target="t"'
        return f"kuberesolver_operator_endpoints{{{labels}}}"

    def scraped() -> dict[str, float]:
        values = scrape(operator)
        assert values.get("kuberesolver_operator_leader") == 1, "not leading yet"
        assert state("terminating") in values, "not reconciled yet"
        return values

    values = until(scraped, timeout_s=60, message="the leader's metrics")
    assert values["process_start_time_seconds"] > 0
    assert values["process_resident_memory_bytes"] > 0
    assert any(k.startswith("python_gc_collections_total") for k in values)
    assert any(k.startswith("python_info{") for k in values)
    assert values[f'kuberesolver_operator_build_info{{version="{__version__}"}}'] == 1
    states = {s: values[state(s)] for s in ("ready", "not_ready", "terminating")}
    assert states == {"ready": 2, "not_ready": 1, "terminating": 1}
    assert not [k for k in values if 'state="total"' in k]  # counted twice in any sum
    assert values['kuberesolver_operator_configmap_write_errors_total{reason="failed"}'] == 0


def test_only_the_leader_reports_leading(
    operator_factory: Callable[..., OperatorProcess],
) -> None:
    first, second = operator_factory(name="a"), operator_factory(name="b")

    def one_leads() -> list[float]:
        leading = [scrape(op)["kuberesolver_operator_leader"] for op in (first, second)]
        assert sorted(leading) == [0, 1], leading
        return leading

    leading = until(one_leads, timeout_s=60, message="one leader")
    leader, standby = (first, second) if leading[0] == 1 else (second, first)
    leader.stop()  # a clean exit releases the Lease: the standby takes over
    until(
        lambda: scrape(standby)["kuberesolver_operator_leader"] == 1,
        timeout_s=60,
        message="the standby leads",
    )


def skipped_events(api: client.ApiClient, namespace: str, kind: str, name: str) -> list[Any]:
    events = client.CoreV1Api(api).list_namespaced_event(
        namespace, field_selector=f"involvedObject.kind={kind},involvedObject.name={name}"
    )
    return [e for e in events.items if e.reason == "InjectionSkipped"]


def test_a_skipped_injection_is_logged_counted_and_an_event_on_the_pods_owner(
    webhook: OperatorProcess,
    admin_api: client.ApiClient,
    namespace: str,
    ns: Namespace,
) -> None:
    ns.create_target("greeter", {"service": "greeter"})
    until_served(admin_api, namespace)
    # The owner a ReplicaSet controller would name (none runs here: replicas 0).
    rs = client.AppsV1Api(admin_api).create_namespaced_replica_set(namespace, {
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "app", "image": "example.invalid/a:1"}]}},
        },
    })  # fmt: skip
    owner = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web",
             "uid": rs.metadata.uid, "controller": True}  # fmt: skip
    pods = 10
    for i in range(pods):
        body = pod(f"web-{i}", INJECT, {"kuberesolver.io/targets": "greeter,nope"})
        body["metadata"]["ownerReferences"] = [owner]
        admitted, warnings = create(admin_api, namespace, body)
        assert any("no GrpcTarget 'nope'" in w for w in warnings), warnings
        assert not [v for v in admitted["spec"]["volumes"] if v["name"].startswith("kuberesolver-")]
    # A dry run gets the warning, and no Event (sideEffects: NoneOnDryRun).
    dry = pod("dry", INJECT, {"kuberesolver.io/targets": "nope"})
    _, _, headers = client.CoreV1Api(admin_api).create_namespaced_pod_with_http_info(
        namespace, dry, dry_run="All"
    )
    assert any("no GrpcTarget 'nope'" in w for k, w in headers.items() if k.lower() == "warning")
    # A Pod of no owner: the Event is about the Pod, by name.
    create(admin_api, namespace, pod("lone", INJECT, {"kuberesolver.io/targets": "Bad/Name"}))

    (event,) = until(
        lambda: skipped_events(admin_api, namespace, "ReplicaSet", "web") or None,
        timeout_s=30,
        message="an InjectionSkipped Event on the ReplicaSet",
    )
    assert event.type == "Warning"
    assert event.involved_object.uid == rs.metadata.uid
    assert "no GrpcTarget 'nope'" in event.message
    assert event.message.startswith("Pod web-")
    assert event.reporting_component == "kuberesolver"
    (lone,) = until(
        lambda: skipped_events(admin_api, namespace, "Pod", "lone") or None,
        timeout_s=30,
        message="an InjectionSkipped Event on the Pod",
    )
    assert "is not a GrpcTarget name" in lone.message
    assert skipped_events(admin_api, namespace, "Pod", "dry") == []

    values = scrape(webhook)
    skipped = 'kuberesolver_operator_admissions_total{outcome="skipped",reason="%s"}'
    assert values[skipped % "unknown_target"] == pods + 1  # and the dry run
    assert values[skipped % "bad_annotation"] == 1
    assert values['kuberesolver_operator_admissions_total{outcome="injected",reason=""}'] >= 1
    assert values["kuberesolver_operator_admission_seconds_count"] >= pods + 2
    # The certificate the test CA issued it (a year's lifetime): served, not expired.
    left = values["kuberesolver_operator_webhook_certificate_expiry_seconds"]
    assert 0 < left <= 400 * 86400
    # One log line per skipped Pod.
    log = webhook.log_text()
    for i in range(pods):
        assert f"Pod {namespace}/web-{i} admitted without its mounts" in log
    # Ten Pods of one owner within the minute: one Event, not ten (the rest are summed up
    # when the minute ends).
    assert len(skipped_events(admin_api, namespace, "ReplicaSet", "web")) == 1


@pytest.mark.parametrize("how", ["flag", "env"])
def test_json_logs_every_line_parses(operator_kubeconfig: Path, ns: Namespace, how: str) -> None:
    """kopf's lines and the operator's own (``kuberesolver.*`` loggers) are JSON alike."""
    op = OperatorProcess(
        operator_kubeconfig,
        {"KUBERESOLVER_LOG_FORMAT": "json"} if how == "env" else None,
        name=f"json-{how}",
        args=("--log-format=json",) if how == "flag" else (),
    )
    with op:
        ns.service("svc")
        ns.make_slice("svc", "svc-1", [ep(pod_ip(191))])
        ns.create_target("t", {"service": "svc"})
        ns.create_target("bad", {"service": "svc", "templates": {"x": "{{"}})
        ns.wait_published("t", {pod_ip(191)})

        def ours_logged() -> list[dict[str, Any]]:
            lines = [json.loads(line) for line in op.log_text().splitlines() if line.strip()]
            messages = [str(r.get("message")) for r in lines]
            assert any(m.startswith("kuberesolver operator starting as") for m in messages)
            assert any(m.startswith("leading: this replica") for m in messages)
            return lines

        records = until(ours_logged, timeout_s=30, message="the operator's own lines")
    op.log_path.unlink(missing_ok=True)
    assert all({"message", "timestamp", "severity"} <= r.keys() for r in records)
    assert {r["severity"] for r in records} >= {"info"}
