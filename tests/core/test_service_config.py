"""The service config parts applied through xDS: pure parsing and the route and cluster builders."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from envoy.config.route.v3 import route_components_pb2

from kuberesolver.core.service_config import (
    OUTLIER_DEFAULTS,
    FailurePercentage,
    SuccessRate,
    format_duration,
    method_rules,
    outlier_detection,
    parse_duration_ns,
)
from kuberesolver.core.snapshot import Snapshot, SnapshotError, TargetRef, decode, encode
from kuberesolver.xds.channel_resources import ChannelSpec
from kuberesolver.xds.resources import (
    ResourceSpec,
    build_cluster,
    build_outlier_detection,
    build_routes,
    unapplied_service_config_keys,
)

SPEC = ChannelSpec("greeter", "ns", "grpc")
TIMED = dataclasses.replace(SPEC, method_timeouts=True)
SVC = "demo.Greeter"


def _retry(**kw: Any) -> dict[str, Any]:
    policy: dict[str, Any] = {
        "maxAttempts": 4,
        "initialBackoff": "0.1s",
        "maxBackoff": "2s",
        "backoffMultiplier": 2,
        "retryableStatusCodes": ["UNAVAILABLE", "RESOURCE_EXHAUSTED", 4],
    }
    policy.update(kw)
    return policy


def _match(route: route_components_pb2.Route) -> str:
    m = route.match
    return f"path={m.path}" if m.HasField("path") else f"prefix={m.prefix}"


@pytest.mark.parametrize(
    ("text", "ns"),
    [("1s", 10**9), ("0.5s", 5 * 10**8), ("1.000000001s", 10**9 + 1), ("0s", 0)],
)
def test_durations(text: str, ns: int) -> None:
    assert parse_duration_ns(text) == ns
    assert parse_duration_ns(format_duration(ns)) == ns


@pytest.mark.parametrize("bad", ["1", "-1s", "1.5ms", "s", 1, None, "1.0000000001s"])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError, match=r"must be a duration like '1\.5s'"):
        parse_duration_ns(bad)


def test_durations_stay_in_protobufs_range() -> None:
    assert parse_duration_ns("315576000000s") == 315_576_000_000 * 10**9
    with pytest.raises(ValueError, match="at most 315576000000s"):
        parse_duration_ns("315576000001s")


def test_routes_are_most_specific_first_then_the_default() -> None:
    config = {
        "methodConfig": [
            {"name": [{}], "timeout": "10s"},
            {"name": [{"service": SVC}], "timeout": "2s"},
            {"name": [{"service": SVC, "method": "Hello"}], "timeout": "0.5s"},
        ]
    }
    routes = build_routes(TIMED, config)
    assert [_match(r) for r in routes] == [
        f"path=/{SVC}/Hello",
        f"prefix=/{SVC}/",
        "prefix=",
    ]
    durations = [r.route.max_stream_duration for r in routes]
    assert [d.max_stream_duration.ToMilliseconds() for d in durations] == [500, 2000, 10000]
    assert [d.grpc_timeout_header_max.ToMilliseconds() for d in durations] == [500, 2000, 10000]


def test_without_a_default_name_a_default_route_is_added_with_the_default_retry() -> None:
    config = {"methodConfig": [{"name": [{"service": SVC, "method": "Hello"}], "timeout": "1s"}]}
    hello, default = build_routes(TIMED, config)
    assert hello.route.max_stream_duration.max_stream_duration.ToMilliseconds() == 1000
    assert _match(default) == "prefix="
    assert not default.route.HasField("max_stream_duration")
    for route in (hello, default):  # no retryPolicy: the channel's bounded retry on UNAVAILABLE
        assert route.route.retry_policy.retry_on == "unavailable"
        assert route.route.retry_policy.num_retries.value == SPEC.max_attempts - 1


def test_no_service_config_gives_the_one_default_route() -> None:
    (route,) = build_routes(SPEC, {})
    assert _match(route) == "prefix="
    assert route.route.retry_policy.retry_on == "unavailable"
    assert not route.route.HasField("max_stream_duration")
    one_attempt = dataclasses.replace(SPEC, max_attempts=1)
    assert not build_routes(one_attempt, {})[0].route.HasField("retry_policy")


def test_retry_policy_in_xds_terms() -> None:
    config = {"methodConfig": [{"name": [{"service": SVC}], "retryPolicy": _retry()}]}
    route, _default = build_routes(SPEC, config)
    policy = route.route.retry_policy
    assert policy.retry_on == "unavailable,resource-exhausted,deadline-exceeded"
    assert policy.num_retries.value == 3  # maxAttempts 4
    assert policy.retry_back_off.base_interval.ToMilliseconds() == 100
    assert policy.retry_back_off.max_interval.ToMilliseconds() == 2000
    assert unapplied_service_config_keys(config) == []


def test_max_attempts_is_capped_at_grpcs_five() -> None:
    config = {"methodConfig": [{"name": [{}], "retryPolicy": _retry(maxAttempts=9)}]}
    assert build_routes(SPEC, config)[0].route.retry_policy.num_retries.value == 4


def test_what_xds_cannot_carry_is_named() -> None:
    config = {
        "healthCheckConfig": {"serviceName": ""},
        "loadBalancingConfig": [{"round_robin": {}}],
        "methodConfig": [
            {
                "name": [{"service": SVC}],
                "waitForReady": True,
                "retryPolicy": _retry(
                    backoffMultiplier=1.5, retryableStatusCodes=["ABORTED", "UNAVAILABLE"]
                ),
            },
            {"name": [{"method": "NoService"}], "timeout": "1s"},
            {"name": [{"service": SVC}], "timeout": "soon"},
        ],
    }
    assert unapplied_service_config_keys(config, method_timeouts=True) == [
        "healthCheckConfig",
        "methodConfig[0].waitForReady",
        "methodConfig[0].retryPolicy.backoffMultiplier 1.5 (xDS always uses 2)",
        "methodConfig[0].retryPolicy.retryableStatusCodes 'ABORTED' (xDS retries only on "
        "CANCELLED, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, INTERNAL, UNAVAILABLE)",
        "methodConfig[1].name[0] must be {service[, method]} or {} (ignored)",
        "methodConfig[2].timeout must be a duration like '1.5s', got 'soon' (ignored)",
        "methodConfig[2] names /demo.Greeter/ again (ignored)",
    ]
    # the first rule for a name wins; UNAVAILABLE is still retried
    (rule,) = method_rules(config)
    assert rule.retry is not None
    assert rule.retry.retry_on == ("unavailable",)


@pytest.mark.parametrize(
    "policy",
    [
        _retry(maxAttempts=1),
        _retry(initialBackoff="0s"),
        _retry(maxBackoff=None),
        _retry(retryableStatusCodes=[]),
        "retry",
    ],
)
def test_an_unusable_retry_policy_leaves_the_default_retry(policy: object) -> None:
    config = {"methodConfig": [{"name": [{}], "retryPolicy": policy}]}
    (route,) = build_routes(SPEC, config)
    assert route.route.retry_policy.retry_on == "unavailable"
    assert any("retryPolicy" in p for p in unapplied_service_config_keys(config))


def test_a_malformed_method_config_is_named_and_ignored() -> None:
    for config in ({"methodConfig": "x"}, {"methodConfig": [1]}, {"methodConfig": [{}]}):
        assert len(build_routes(SPEC, config)) == 1
        assert unapplied_service_config_keys(config)


def test_outlier_detection_defaults_are_small() -> None:
    od = outlier_detection({})
    assert od == OUTLIER_DEFAULTS
    assert od.interval_ns == 10**9
    assert od.success_rate is None
    assert od.failure_percentage == FailurePercentage(85, 100, 2, 10)
    proto = build_outlier_detection(od)
    assert proto.failure_percentage_minimum_hosts.value == 2
    assert proto.failure_percentage_request_volume.value == 10
    assert proto.enforcing_failure_percentage.value == 100
    # xDS enforces success-rate ejection unless it is switched off explicitly
    assert proto.HasField("enforcing_success_rate")
    assert proto.enforcing_success_rate.value == 0


def test_outlier_detection_naming_one_algorithm_turns_on_just_that_one() -> None:
    od = outlier_detection({"successRateEjection": {"minimumHosts": 3}, "interval": "0.5s"})
    assert od.success_rate == SuccessRate(minimum_hosts=3)
    assert od.failure_percentage is None
    assert od.interval_ns == 5 * 10**8
    proto = build_outlier_detection(od)
    assert proto.enforcing_success_rate.value == 100
    assert proto.enforcing_failure_percentage.value == 0
    assert proto.interval.ToMilliseconds() == 500


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], "outlierDetection must be an object"),
        ({"intervall": "1s"}, "unknown keys 'intervall'"),
        ({"interval": "0s"}, "outlierDetection.interval must be above 0s"),
        ({"maxEjectionPercent": 101}, "maxEjectionPercent must be 0..100"),
        ({"failurePercentageEjection": {"threshold": -1}}, "threshold must be 0..100"),
        ({"successRateEjection": {"requestVolume": True}}, "requestVolume must be a non-neg"),
    ],
)
def test_bad_outlier_detection_is_refused_with_its_field(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        outlier_detection(value)


def test_the_cluster_carries_the_snapshots_outlier_detection() -> None:
    snap = Snapshot(TargetRef("greeter", "ns"), 1)
    own = dataclasses.replace(snap, outlier_detection=outlier_detection({"interval": "2s"}))
    assert build_cluster(SPEC, own).outlier_detection.interval.ToMilliseconds() == 2000
    # none in the snapshot: the client's channels eject with the defaults, a remote
    # server's resources (the operator's) carry none, and a channel can turn it off
    assert build_cluster(SPEC, snap).outlier_detection == build_outlier_detection(OUTLIER_DEFAULTS)
    remote = ResourceSpec("greeter.ns", "greeter", "ns")
    assert not build_cluster(remote, snap).HasField("outlier_detection")
    off = dataclasses.replace(SPEC, default_outlier_detection=False)
    assert not build_cluster(off, snap).HasField("outlier_detection")
    assert off.name != SPEC.name
    assert OUTLIER_DEFAULTS.base_ejection_time_ns == 90 * 10**9


def test_the_snapshot_round_trips_outlier_detection_and_older_documents_stay_identical() -> None:
    snap = Snapshot(TargetRef("greeter", "ns"), 1)
    assert "outlierDetection" not in encode(snap)
    with_od = dataclasses.replace(snap, outlier_detection=outlier_detection({"interval": "2s"}))
    assert decode(encode(with_od)) == with_od
    text = encode(with_od).replace('"maxEjectionPercent": 33', '"maxEjectionPercent": "half"')
    with pytest.raises(SnapshotError, match=r"maxEjectionPercent must be 0\.\.100"):
        decode(text)


def test_sub_millisecond_values_are_served_as_one_millisecond() -> None:
    """grpc keeps whole milliseconds: a 0 there is no timeout, and a backoff grpc refuses."""
    tiny = "0.0000001s"
    config = {
        "methodConfig": [
            {"name": [{}], "timeout": tiny, "retryPolicy": _retry(initialBackoff=tiny)}
        ]
    }
    (rule,) = method_rules(config)
    assert rule.timeout_ns == 10**6
    assert rule.retry is not None
    assert rule.retry.initial_backoff_ns == 10**6


def test_grpcio_channels_get_no_timeouts_and_are_told_so() -> None:
    """grpcio ends service-config timeouts 1-2 s early (grpc/grpc#34547)."""
    config = {"methodConfig": [{"name": [{}], "timeout": "5s", "retryPolicy": _retry()}]}
    (route,) = build_routes(SPEC, config)
    assert not route.route.HasField("max_stream_duration")
    assert route.route.retry_policy.num_retries.value == 3  # the retry policy is served
    assert unapplied_service_config_keys(config) == [
        "methodConfig[0].timeout (grpcio ends such calls 1-2 s early, "
        "grpc/grpc#34547: set it on the call)"
    ]
    assert unapplied_service_config_keys(config, method_timeouts=True) == []
    assert SPEC.name == TIMED.name  # one setting per process: not part of the name
