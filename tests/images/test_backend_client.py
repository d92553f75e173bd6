"""The test images work together: the client, through kuberesolver, balances over two backends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from testenv.controlplane import free_port
from testenv.images import BuiltImage
from testenv.images.run import container, process_in, run, start
from testenv.wait import until

pytestmark = pytest.mark.timeout(1800)


def serving(port: int) -> bool:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


class Backend:
    """One backend container in the test's network namespace."""

    def __init__(self, ref: str, pod: str) -> None:
        self.ref = ref
        self.pod = pod
        self.port = free_port()
        self.log = tempfile.NamedTemporaryFile(prefix=f"backend-{pod}-", suffix=".log")  # noqa: SIM115

    def __enter__(self) -> Backend:
        self._container = container(self.ref)
        cid = self._container.__enter__()
        env = {"PORT": str(self.port), "POD_NAME": self.pod, "GRACE_S": "1"}
        self.proc = start(cid, ["python3", "/app/backend.py"], self.log, env=env, network="host")
        until(
            lambda: self.alive() and serving(self.port),
            timeout_s=60,
            message=f"backend {self.pod} serving",
            retry_on=(),
        )
        return self

    def alive(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"backend {self.pod} exited:\n{self.output()}")
        return True

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def terminate(self) -> None:
        """SIGTERM to the server itself, as a runtime stops a container."""
        os.kill(process_in(self.proc, "/app/backend.py"), signal.SIGTERM)

    def __exit__(self, *exc_info: object) -> None:
        if self.proc.poll() is None:
            self.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._container.__exit__(None, None, None)
        self.log.close()


@pytest.fixture
def backends(images: dict[str, BuiltImage]) -> Iterator[list[Backend]]:
    with Backend(images["backend"].ref, "pod-a") as a, Backend(images["backend"].ref, "pod-b") as b:
        yield [a, b]


def snapshot_dir(backends: list[Backend]) -> Path:
    """A snapshot of the two backends in kubelet's layout, readable by the client's user."""
    root = Path(tempfile.mkdtemp(prefix="kuberesolver-images-snapshots-"))
    addresses = [f"127.0.0.1:{b.port}" for b in backends]
    subprocess.run(
        [sys.executable, "-m", "kuberesolver", "snapshot", str(root), "greeter.demo", *addresses],
        check=True,
        capture_output=True,
    )
    subprocess.run(["chmod", "-R", "a+rX", str(root)], check=True)
    return root


def lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(ln) for ln in stdout.splitlines() if ln.startswith("{")]


def test_the_client_reaches_both_backends_through_kuberesolver(
    images: dict[str, BuiltImage], backends: list[Backend]
) -> None:
    snapshots = snapshot_dir(backends)
    env = {
        "TARGET": "kubernetes:///greeter.demo:grpc",
        "KUBERESOLVER_DIR": "/snapshots",
        "RATE": "50",
        "CALLS": "60",
        "WAIT_FOR_READY": "1",
        "TIMEOUT_S": "10",
    }
    with container(images["client"].ref) as cid:
        done = run(
            cid,
            ["python3", "/app/client.py"],
            env=env,
            volumes=[f"{snapshots}:/snapshots:ro"],
            network="host",
            timeout_s=120,
        )
    assert done.returncode == 0, done.stdout + done.stderr
    out = lines(done.stdout)
    calls = [ln for ln in out if "summary" not in ln]
    (summary,) = [ln["summary"] for ln in out if "summary" in ln]
    assert len(calls) == 60
    assert [c for c in calls if not c["ok"]] == []
    assert {c["pod"] for c in calls} == {"pod-a", "pod-b"}
    assert summary["calls"] == 60
    assert summary["failed"] == 0
    assert sum(summary["pods"].values()) == 60


def test_the_client_reports_failed_calls(images: dict[str, BuiltImage]) -> None:
    """Nothing listens on the target: every call fails, and says so."""
    port = free_port()
    env = {"TARGET": f"127.0.0.1:{port}", "RATE": "20", "CALLS": "5", "TIMEOUT_S": "0.5"}
    with container(images["client"].ref) as cid:
        done = run(cid, ["python3", "/app/client.py"], env=env, network="host", timeout_s=60)
    assert done.returncode == 0, done.stdout + done.stderr
    out = lines(done.stdout)
    assert [c["code"] for c in out if "summary" not in c] == ["UNAVAILABLE"] * 5
    assert out[-1]["summary"] == {"calls": 5, "failed": 5, "pods": {}}


def test_a_backend_stops_cleanly_on_sigterm(backends: list[Backend]) -> None:
    backend = backends[0]
    backend.terminate()
    assert backend.proc.wait(30) == 0, backend.output()
    events = [json.loads(ln)["event"] for ln in backend.output().splitlines() if ln.startswith("{")]
    assert events == ["serving", "stopped"]
    assert not serving(backend.port)
