"""SIGTERM ends the operator, the projector and a drainable server promptly: real processes,
on the real control plane.

Mid-render (a render worker burning CPU on a hostile template), the operator
gets SIGTERM and must exit with status 0, its Lease released and no child
process left. The bound waited for is generous (10 s: the goal is 2 s, and
``bench/shutdown.py`` measures it); the old code never exited by itself: its
event loop blocked on closing a watch another thread was reading, until
kubelet's SIGKILL 30 s later.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from kubernetes import client

from testenv import ControlPlane, drain_server, free_port
from testenv.netns import pod_ip
from testenv.operator_process import OperatorProcess
from testenv.wait import until
from tests.cluster import ROOT
from tests.integration.operator.helpers import Namespace, ep

pytestmark = pytest.mark.integration

EXIT_BOUND_S = 10.0
LEASE = ("kuberesolver-system", "kuberesolver-operator")
CPU_BOMB = (
    "{% for a in range(100000) %}{% for b in range(100000) %}{% for c in range(100000) %}"
    "{% endfor %}{% endfor %}{% endfor %}"
)


def lease_holder(api: client.ApiClient) -> str:
    lease = client.CoordinationV1Api(api).read_namespaced_lease(LEASE[1], LEASE[0])
    return str(lease.spec.holder_identity or "")


def busy_worker(pid: int) -> psutil.Process | None:
    """A render worker (a child) that has burnt more than a second of CPU: mid-render."""
    for child in psutil.Process(pid).children(recursive=True):
        try:
            times = child.cpu_times()
        except psutil.NoSuchProcess:
            continue
        if times.user + times.system > 1.0:
            return child
    return None


def alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_sigterm_mid_render_exits_with_the_lease_released_and_no_child_left(
    ns: Namespace, operator_factory: Callable[..., OperatorProcess]
) -> None:
    op = operator_factory(
        {"KUBERESOLVER_RENDER_CPU_S": "300", "KUBERESOLVER_RENDER_TIMEOUT_MS": "300000"}
    )
    assert op.popen is not None
    until(lambda: lease_holder(ns.api) == op.identity, timeout_s=60, message="it leads")
    ns.service("slow")
    ns.make_slice("slow", "slow-1", [ep(pod_ip(1))])
    ns.create_target("slow", {"service": "slow", "templates": {"a.txt": CPU_BOMB}})
    worker = until(lambda: busy_worker(op.popen.pid), timeout_s=60, message="a render under way")
    children = psutil.Process(op.popen.pid).children(recursive=True)
    assert worker in children

    op.popen.send_signal(signal.SIGTERM)
    try:
        status = op.popen.wait(EXIT_BOUND_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running {EXIT_BOUND_S} s after SIGTERM:\n{op.log_tail()}")
    assert status == 0, op.log_tail()
    assert lease_holder(ns.api) == "", "the Lease was not released"
    left = [c.pid for c in children if alive(c)]
    assert left == [], f"child processes left behind: {left}"
    assert "Traceback" not in op.log_text()


def test_the_projector_exits_on_sigterm_mid_watch(
    control_plane: ControlPlane, admin_api: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    client.CoreV1Api(admin_api).create_namespaced_config_map(
        namespace, {"metadata": {"name": "greeter"}, "data": {"k": "v"}}
    )
    target = tmp_path / "projected"
    log = tmp_path / "projector.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kuberesolver.projector", f"--namespace={namespace}",
             "--configmap=greeter", f"--dir={target}"],
            env={**os.environ, "KUBECONFIG": str(control_plane.admin_kubeconfig)},
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        until((target / "k").exists, timeout_s=60, message="the first projection")
        proc.send_signal(signal.SIGTERM)
        try:
            status = proc.wait(EXIT_BOUND_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {EXIT_BOUND_S} s after SIGTERM:\n{log.read_text()}")
        assert status == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_a_drainable_server_exits_on_sigterm() -> None:
    """The README's recipe, as a real process: the drain (no client here) and stop, then exit."""
    address = f"{pod_ip(250)}:{free_port()}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "testenv.drain_server", address],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        lines = iter(proc.stdout.readline, b"")  # grpc's own log lines come first
        assert any(drain_server.READY.encode() in line for line in lines), "it never served"
        proc.send_signal(signal.SIGTERM)
        try:
            status = proc.wait(EXIT_BOUND_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {EXIT_BOUND_S} s after SIGTERM")
        assert status == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
