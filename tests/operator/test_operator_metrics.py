"""The operator's metrics registry (pure): the series it exposes, and label values that sum."""

from __future__ import annotations

import asyncio
import datetime

import pytest
from kubernetes import client
from prometheus_client import generate_latest

from kuberesolver._version import __version__
from kuberesolver.core.snapshot import Endpoint
from kuberesolver.operator.runtime.metrics import (
    ENDPOINT_STATES,
    SKIP_REASONS,
    XDS_DENIAL_REASONS,
    Metrics,
    endpoint_states,
    shared,
)
from kuberesolver.operator.webhook.certs import issue_ca, issue_leaf, seconds_left
from kuberesolver.operator.xds.auth import KubeAuthorizer

CERT_EXPIRY = "kuberesolver_operator_webhook_certificate_expiry_seconds"


def names(metrics: Metrics) -> set[str]:
    return {m.name for m in metrics.registry.collect()}


def test_process_platform_and_gc_collectors_are_registered() -> None:
    metrics = Metrics()
    assert metrics.value("process_start_time_seconds") > 0
    assert metrics.value("process_resident_memory_bytes") > 0
    assert {"python_info", "python_gc_collections"} <= names(metrics)


def test_build_info_carries_the_version() -> None:
    assert (
        Metrics(process=False).value("kuberesolver_operator_build_info", version=__version__) == 1
    )


def test_leader_follows_the_election_at_each_scrape() -> None:
    metrics = Metrics(process=False)
    leading = False
    metrics.follow_leadership(lambda: leading)
    assert metrics.value("kuberesolver_operator_leader") == 0
    leading = True
    assert metrics.value("kuberesolver_operator_leader") == 1


def test_certificate_expiry_has_no_sample_until_a_certificate_is_served() -> None:
    metrics = Metrics(process=False)
    left: float | None = None
    metrics.follow_certificate(lambda: left)
    assert metrics.registry.get_sample_value(CERT_EXPIRY) is None
    assert f"# TYPE {CERT_EXPIRY} gauge" in generate_latest(metrics.registry).decode()
    left = 3600.0
    assert metrics.value(CERT_EXPIRY) == 3600.0


def test_seconds_left_of_a_served_certificate() -> None:
    now = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
    ca, ca_key = issue_ca(now, 9000)
    leaf, _ = issue_leaf(ca, ca_key, ["svc.ns.svc"], now, 900)
    assert seconds_left(leaf, now) == 900
    assert seconds_left(leaf, now + datetime.timedelta(seconds=1000)) == -100


@pytest.mark.parametrize(
    ("endpoints", "want"),
    [
        ([], {"ready": 0, "not_ready": 0, "terminating": 0}),
        (
            [
                Endpoint("10.0.0.1", 1),
                Endpoint("10.0.0.2", 1, ready=False),
                Endpoint("10.0.0.3", 1, ready=False, serving=True, terminating=True),
                Endpoint("10.0.0.4", 1, ready=True, terminating=True),  # a slice may say so
                Endpoint("10.0.0.5", 1, ready=False, serving=False),
            ],
            {"ready": 1, "not_ready": 2, "terminating": 2},
        ),
    ],
)
def test_endpoint_states_partition_the_endpoints(
    endpoints: list[Endpoint], want: dict[str, int]
) -> None:
    counts = endpoint_states(endpoints)
    assert counts == want
    assert sum(counts.values()) == len(endpoints)


def test_the_endpoints_gauge_sums_to_the_published_total_and_is_forgotten() -> None:
    metrics = Metrics(process=False)
    endpoints = [
        Endpoint("10.0.0.1", 1),
        Endpoint("10.0.0.2", 1),
        Endpoint("10.0.0.3", 1, ready=False),
        Endpoint("10.0.0.4", 1, ready=False, terminating=True),
    ]
    metrics.set_endpoints("ns", "t", endpoints)
    samples = {
        s.labels["state"]: s.value
        for m in metrics.registry.collect()
        if m.name == "kuberesolver_operator_endpoints"
        for s in m.samples
    }
    assert set(samples) == set(ENDPOINT_STATES)  # no "total": it would be counted twice
    assert sum(samples.values()) == len(endpoints)
    assert samples["ready"] == 2
    metrics.set_endpoints("ns", "t", endpoints[:1])  # fewer: each state is overwritten
    not_ready = {"namespace": "ns", "target": "t", "state": "not_ready"}
    assert metrics.value("kuberesolver_operator_endpoints", **not_ready) == 0
    metrics.forget_target("ns", "t")
    assert not any(
        m.samples for m in metrics.registry.collect() if m.name == "kuberesolver_operator_endpoints"
    )


def test_admission_and_denial_series_exist_at_zero_before_any_event() -> None:
    """A rate() over a series that appears only at its first increment misses that one."""
    metrics = Metrics(process=False)
    for outcome in ("injected", "unchanged", "error"):
        assert (
            metrics.registry.get_sample_value(
                "kuberesolver_operator_admissions_total", {"outcome": outcome, "reason": ""}
            )
            == 0
        )
    for reason in SKIP_REASONS:
        assert (
            metrics.registry.get_sample_value(
                "kuberesolver_operator_admissions_total", {"outcome": "skipped", "reason": reason}
            )
            == 0
        )
    for reason in XDS_DENIAL_REASONS:
        assert (
            metrics.registry.get_sample_value(
                "kuberesolver_operator_xds_denials_total", {"reason": reason}
            )
            == 0
        )
    metrics.skipped("unknown_target")
    metrics.admission_seconds.observe(0.01)
    metrics.write_failed("WriteRefused")
    skipped = {"outcome": "skipped", "reason": "unknown_target"}
    assert metrics.value("kuberesolver_operator_admissions_total", **skipped) == 1
    assert metrics.value("kuberesolver_operator_admission_seconds_count") == 1
    errors = "kuberesolver_operator_configmap_write_errors_total"
    assert metrics.value(errors, reason="refused") == 1


def test_shared_creates_one_metrics_per_memo() -> None:
    memo: dict[str, object] = {}
    first = shared(memo)
    assert shared(memo) is first
    assert memo["metrics"] is first


def test_xds_refusals_without_an_api_call_are_counted_by_reason() -> None:
    """No token, or a target this replica does not serve: refused before any review."""
    metrics = Metrics(process=False)
    served = {("ns", "t"): "t"}
    authorizer = KubeAuthorizer(client.ApiClient(), served.get, on_denied=metrics.xds_denied)

    async def checks() -> list[bool]:
        return [
            await authorizer.allowed("", ("ns", "t")),
            await authorizer.allowed("a-token", ("ns", "unknown")),
        ]

    assert asyncio.run(checks()) == [False, False]
    assert metrics.value("kuberesolver_operator_xds_denials_total", reason="no_token") == 1
    assert metrics.value("kuberesolver_operator_xds_denials_total", reason="unknown_target") == 1
    assert authorizer.reviews == 0
