"""spec.outlierDetection: validated (its field named), defaults filled, carried to the snapshot."""

from __future__ import annotations

from typing import Any

import pytest

from kuberesolver.core.service_config import OUTLIER_DEFAULTS, FailurePercentage
from kuberesolver.core.snapshot import ENDPOINTS_KEY, decode
from kuberesolver.operator.logic.reconcile import Publish, Written, compose, plan, report
from kuberesolver.operator.logic.spec import SpecError, parse_spec
from tests.operator._views import greeter_service, slices


def _plan(spec: dict[str, Any]) -> Publish:
    p = plan("gt", "ns", spec, greeter_service(), slices("10.0.0.1"), None)
    assert isinstance(p, Publish)
    return p


def test_an_empty_object_turns_on_the_small_defaults() -> None:
    target = parse_spec("gt", "ns", {"service": "greeter", "outlierDetection": {}})
    assert target.outlier_detection == OUTLIER_DEFAULTS
    fp = parse_spec(
        "gt",
        "ns",
        {
            "service": "greeter",
            "outlierDetection": {"failurePercentageEjection": {"threshold": 50}},
        },
    ).outlier_detection
    assert fp is not None
    assert fp.failure_percentage == FailurePercentage(threshold=50)
    assert parse_spec("gt", "ns", {"service": "greeter"}).outlier_detection is None


@pytest.mark.parametrize(
    ("od", "message"),
    [
        ("on", "spec.outlierDetection must be an object"),
        ({"interval": "1m"}, "spec.outlierDetection.interval must be a duration"),
        (
            {"failurePercentageEjection": {"minimumHosts": -1}},
            "spec.outlierDetection.failurePercentageEjection.minimumHosts must be",
        ),
    ],
)
def test_bad_outlier_detection_names_the_field(od: object, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_spec("gt", "ns", {"service": "greeter", "outlierDetection": od})


def test_the_published_snapshot_carries_it_and_omits_it_when_off() -> None:
    on = _plan({"service": "greeter", "outlierDetection": {"interval": "2s"}})
    data = compose(on, {})
    snap = decode(data.data[ENDPOINTS_KEY])  # type: ignore[union-attr]
    assert snap.outlier_detection is not None
    assert snap.outlier_detection.interval_ns == 2 * 10**9
    assert snap.outlier_detection.failure_percentage == FailurePercentage()
    off = compose(_plan({"service": "greeter"}), {})
    assert "outlierDetection" not in off.data[ENDPOINTS_KEY]  # type: ignore[union-attr]


def test_service_config_parts_clients_do_not_apply_are_a_warning() -> None:
    # The timeout is not among them: the clients make it each call's deadline.
    method = {"name": [{"service": "demo.Greeter"}], "timeout": "1s", "waitForReady": True}
    spec = {"service": "greeter", "serviceConfig": {"methodConfig": [method]}}
    p = _plan(spec)
    rep = report(p, compose(p, {}), Written(True), kept=True)
    assert rep.warnings == {
        (
            "ServiceConfigNotApplied",
            "kuberesolver clients do not apply these serviceConfig parts: "
            "methodConfig[0].waitForReady",
        )
    }
    del method["waitForReady"], method["timeout"]
    method["retryPolicy"] = {
        "maxAttempts": 2,
        "initialBackoff": "0.1s",
        "maxBackoff": "1s",
        "backoffMultiplier": 2,
        "retryableStatusCodes": ["UNAVAILABLE"],
    }
    p = _plan(spec)
    assert not report(p, compose(p, {}), Written(True), kept=True).warnings
