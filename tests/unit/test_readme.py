"""The README's Python examples run as written, against a real server and a real snapshot.

Each block calls the health service of the target greeter.backend and prints the answer.
"""

from __future__ import annotations

import contextlib
import io
import re
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2_grpc

from kuberesolver.projector.atomic_writer import write_atomic
from kuberesolver.snapshot import ENDPOINTS_KEY, Endpoint, Snapshot, TargetRef, encode

README = Path(__file__).resolve().parents[2] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_readme_has_python_examples() -> None:
    assert python_blocks()


@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_readme_python_block_runs(
    index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.7:0")
    server.start()
    try:
        # The mounted ConfigMap of target greeter.backend, as kubelet lays it out.
        snapshot = Snapshot(
            target=TargetRef("greeter", "backend", "grpc", "grpc", 8080),
            revision=1,
            endpoints=(Endpoint("127.0.0.7", port, pod="greeter-0"),),
        )
        write_atomic(tmp_path / "greeter.backend", {ENDPOINTS_KEY: encode(snapshot).encode()})
        monkeypatch.setenv("KUBERESOLVER_DIR", str(tmp_path))
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(python_blocks()[index], f"README.md block {index}", "exec"), {})
        assert "SERVING" in out.getvalue()
    finally:
        server.stop(None)
