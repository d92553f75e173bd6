"""The README's client example runs on a laptop as written: a hand-written snapshot, no cluster."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent import futures
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2_grpc

from tests.adoption.conftest import README, readme_block


def test_the_local_block_runs_the_client_example(tmp_path: Path) -> None:
    (example,) = re.findall(
        r"## Using the client\n\n```python\n(.*?)```", README.read_text(), re.DOTALL
    )
    (tmp_path / "client.py").write_text(example)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    assert server.add_insecure_port("127.0.0.1:50051") == 50051
    server.start()
    env = {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp_path),
    }
    try:
        outputs = [
            subprocess.run(
                ["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True, text=True,
                timeout=60, check=False,
            )
            for line in readme_block("local")
        ]  # fmt: skip
    finally:
        server.stop(None)
    for done in outputs:
        assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "snapshots/greeter.backend/endpoints.json").is_file()
    assert "status: SERVING" in outputs[-1].stdout, outputs[-1].stdout + outputs[-1].stderr
