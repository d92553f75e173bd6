"""A rolling update of five real gRPC backends under steady load, end to end.

Real control plane, the operator under its own RBAC, kube-proxy in nftables
mode, the projector as the client's ServiceAccount, and a kuberesolver
channel calling at 250 RPC/s with a 1 s deadline and without wait_for_ready
(see testenv/rollout.py for the harness, shared with bench/rolling_update.py).
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from testenv import ControlPlane
from testenv.kube_proxy import KubeProxy
from testenv.mounts_webhook import registered, webhook_env
from testenv.operator_process import OperatorProcess
from testenv.rollout import RolloutResult, run_rollout

pytestmark = pytest.mark.e2e

LAG_S = 60.0
_ips = itertools.count(1000, 20)


@pytest.fixture
def rollout(
    control_plane: ControlPlane,
    admin_api: client.ApiClient,
    namespace: str,
    operator_kubeconfig: Path,
    kube_proxy: KubeProxy,
    tmp_path: Path,
) -> Callable[..., RolloutResult]:
    """Run one setting in this test's namespace, with an operator of its own (serving the
    mounts webhook, with the projector image, for ``via_webhook``)."""

    def run(**kw: Any) -> RolloutResult:
        env: dict[str, str] = {}
        hooked: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
        if kw.get("via_webhook"):
            env = webhook_env(control_plane, tmp_path / "webhook-tls")
            env["KUBERESOLVER_PROJECTOR_IMAGE"] = "kuberesolver-projector:0.1.0"
            hooked = registered(admin_api, control_plane, int(env["KUBERESOLVER_WEBHOOK_PORT"]))
        with hooked, OperatorProcess(operator_kubeconfig, env, name="rollout"):
            result = run_rollout(
                control_plane, admin_api, namespace, tmp_path, first_ip=next(_ips), **kw
            )
        print(f"\n{namespace}: {result.summary()} failures={result.failures}")
        return result

    return run


def test_projector_without_lag_loses_nothing_and_new_pods_get_traffic_within_1s(
    rollout: Callable[..., RolloutResult],
) -> None:
    result: RolloutResult = rollout()
    assert result.rps >= 200
    assert result.failed_rpcs == 0, result.failures
    assert result.undrained_stops == 0
    late = {n: ms for n, ms in result.ready_to_first_rpc_ms.items() if ms is None or ms > 1000}
    assert not late, f"new pods without traffic 1 s after Ready: {late}"


def test_60s_lag_with_the_cluster_ip_fallback_loses_nothing(
    rollout: Callable[..., RolloutResult],
) -> None:
    """0 failed RPCs while the file lists only gone pods.

    The client still sends to each old pod until that pod drains
    (kuberesolver.server: a GOAWAY while the server still serves, new
    connections refused); then it takes the ClusterIP fallback, and the
    server stops with nothing left to cancel.
    """
    result: RolloutResult = rollout(lag_s=LAG_S, fallback=True)
    assert result.rps >= 200
    assert result.failed_rpcs == 0, result.failures
    assert result.undrained_stops == 0


def test_60s_lag_without_the_fallback_fails_calls(rollout: Callable[..., RolloutResult]) -> None:
    """The baseline that shows what the fallback buys: the stale file lists only gone pods."""
    result: RolloutResult = rollout(lag_s=LAG_S, fallback=False)
    print(f"failed RPCs without the fallback: {result.failed_rpcs} of {result.rpcs}")
    assert result.failed_rpcs > 0


def test_a_headless_service_gets_the_projector_from_the_webhook_and_loses_nothing(
    rollout: Callable[..., RolloutResult],
) -> None:
    """No ClusterIP, so no fallback behind a lagging mount: the webhook gives the client Pod
    the projector instead, and the harness runs what the admitted Pod says."""
    result: RolloutResult = rollout(headless=True, via_webhook=True, lag_s=LAG_S)
    assert result.delivery == "projector sidecar (webhook)"
    assert result.rpcs > 0
    assert result.failed_rpcs == 0, result.failures
    assert None not in result.ready_to_first_rpc_ms.values()  # every new Pod got calls
