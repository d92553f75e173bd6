"""spec.outlierDetection through the real operator: into the ConfigMap's snapshot, and out again."""

from __future__ import annotations

import pytest
from kubernetes import client

from kuberesolver.core.service_config import FailurePercentage
from kuberesolver.core.snapshot import Snapshot
from testenv.netns import pod_ip
from testenv.operator_process import OperatorProcess
from testenv.wait import until
from tests.integration.operator.helpers import (
    create_target,
    ep,
    make_slice,
    patch_target,
    selectorless_service,
    snapshot_of,
    wait_addresses,
)

pytestmark = pytest.mark.integration


def test_outlier_detection_is_published_and_withdrawn(
    admin_api: client.ApiClient, namespace: str, operator: OperatorProcess
) -> None:
    selectorless_service(admin_api, namespace, "od")
    make_slice(admin_api, namespace, "od", "od-1", [ep(pod_ip(71))])
    spec = {"service": "od", "outlierDetection": {"interval": "2s"}}
    create_target(admin_api, namespace, "od", spec)
    snap = wait_addresses(admin_api, namespace, "od", {f"{pod_ip(71)}:50051"})
    assert snap.outlier_detection is not None
    assert snap.outlier_detection.interval_ns == 2 * 10**9
    assert snap.outlier_detection.failure_percentage == FailurePercentage()  # small defaults

    patch_target(admin_api, namespace, "od", {"outlierDetection": None})

    def withdrawn() -> Snapshot:
        now = snapshot_of(admin_api, namespace, "od")
        assert now is not None
        assert now.outlier_detection is None, now.outlier_detection
        return now

    assert until(withdrawn, timeout_s=60, message="outlierDetection withdrawn").revision == (
        snap.revision  # the endpoints did not change
    )
