"""High availability: two replicas under kopf peering, one writes; killing it hands over."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from kubernetes import client

from testenv.netns import pod_ip
from testenv.operator_process import OperatorProcess
from testenv.wait import until
from tests.operator.helpers import (
    create_target,
    ep,
    make_slice,
    selectorless_service,
)
from tests.operator.test_lifecycle import wait_published
from tests.operator.test_publish import configmap_writes

pytestmark = pytest.mark.integration


def test_two_replicas_one_writer_and_failover(
    admin_api: client.ApiClient, namespace: str, operator_factory: Callable[..., OperatorProcess]
) -> None:
    active = operator_factory(env={"KUBERESOLVER_PEERING_PRIORITY": "200"}, name="active")
    standby = operator_factory(env={"KUBERESOLVER_PEERING_PRIORITY": "100"}, name="standby")
    # Both start paused until peering says who leads; only the active one resumes.
    until(
        lambda: "Resuming operations" in active.log_text(), timeout_s=60, message="active resumed"
    )

    selectorless_service(admin_api, namespace, "svc")
    make_slice(admin_api, namespace, "svc", "svc-1", [ep(pod_ip(161))])
    create_target(admin_api, namespace, "a", {"service": "svc"})
    create_target(admin_api, namespace, "b", {"service": "svc", "port": "grpc"})
    wait_published(admin_api, namespace, "a", {pod_ip(161)})
    wait_published(admin_api, namespace, "b", {pod_ip(161)})
    make_slice(admin_api, namespace, "svc", "svc-1", [ep(pod_ip(162))])
    wait_published(admin_api, namespace, "a", {pod_ip(162)})
    wait_published(admin_api, namespace, "b", {pod_ip(162)})
    assert configmap_writes(active) >= 4
    assert configmap_writes(standby) == 0
    assert "Resuming operations" not in standby.log_text()

    active.kill()  # SIGKILL: no goodbye in the peering object; the standby waits out its lifetime
    make_slice(admin_api, namespace, "svc", "svc-1", [ep(pod_ip(163)), ep(pod_ip(164))])
    make_slice(admin_api, namespace, "svc", "svc-2", [ep(pod_ip(165))])
    ips = {pod_ip(163), pod_ip(164), pod_ip(165)}
    wait_published(admin_api, namespace, "a", ips, timeout_s=120)
    wait_published(admin_api, namespace, "b", ips, timeout_s=60)
    assert configmap_writes(standby) >= 2
    assert "Resuming operations" in standby.log_text()
