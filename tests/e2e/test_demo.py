"""`make demo` stays true: the demo runs the whole pipeline and checks each step itself."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def test_demo_runs_the_whole_pipeline() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "demo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    # The operator published, the client saw every pod, followed the scale-up
    # and drained the pod that stopped being ready.
    assert "greeter   greeter   grpc   3       Published" in out
    assert "greeter   greeter   grpc   4       Published" in out
    assert "greeter-4    #" in out
    assert out.rstrip().endswith("Control plane stopped.\x1b[0m")
