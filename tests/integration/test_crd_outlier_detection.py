"""The CRD's spec.outlierDetection schema, checked by a real kube-apiserver."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

pytestmark = pytest.mark.integration

GROUP, VERSION, PLURAL = "kuberesolver.io", "v1alpha1", "grpctargets"


def _create(api: client.ApiClient, namespace: str, name: str, od: object) -> dict[str, Any]:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "GrpcTarget",
        "metadata": {"name": name},
        "spec": {"service": "greeter", "outlierDetection": od},
    }
    objs = client.CustomObjectsApi(api)
    return objs.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)  # type: ignore[no-any-return]


def test_the_crd_accepts_outlier_detection(admin_api: client.ApiClient, namespace: str) -> None:
    assert _create(admin_api, namespace, "empty", {})["spec"]["outlierDetection"] == {}
    full = {
        "interval": "0.5s",
        "baseEjectionTime": "10s",
        "maxEjectionTime": "60s",
        "maxEjectionPercent": 34,
        "successRateEjection": {
            "stdevFactor": 1000,
            "enforcementPercentage": 50,
            "minimumHosts": 3,
            "requestVolume": 20,
        },
        "failurePercentageEjection": {
            "threshold": 60,
            "enforcementPercentage": 100,
            "minimumHosts": 2,
            "requestVolume": 5,
        },
    }
    assert _create(admin_api, namespace, "full", full)["spec"]["outlierDetection"] == full


@pytest.mark.parametrize(
    ("od", "field"),
    [
        ({"interval": "1m"}, "spec.outlierDetection.interval"),
        ({"maxEjectionPercent": 101}, "spec.outlierDetection.maxEjectionPercent"),
        ({"failurePercentageEjection": {"threshold": -1}}, "failurePercentageEjection.threshold"),
        ("on", "spec.outlierDetection"),
    ],
)
def test_the_crd_rejects_bad_outlier_detection(
    admin_api: client.ApiClient, namespace: str, od: object, field: str
) -> None:
    with pytest.raises(client.ApiException) as info:
        _create(admin_api, namespace, "bad", od)
    assert info.value.status == 422, info.value.body
    assert field in str(info.value.body)
