"""`make demo` stays true: the demo runs the whole pipeline and checks each step itself.

The checks read what the demo says (the GrpcTarget's table, the calls per pod),
not how it lays it out: colours and column widths may change freely.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
SPREAD_ROW = re.compile(r"^\s*(?P<pod>\S+)\s+(?P<bar>#+)\s+(?P<calls>\d+)\s*$")


def sections(out: str) -> dict[str, str]:
    """The demo's steps: each ``==> heading`` with the text under it."""
    parts = re.split(r"^==> (.*)$", ANSI.sub("", out), flags=re.MULTILINE)
    return {head.strip(): body for head, body in zip(parts[1::2], parts[2::2], strict=True)}


def step(steps: dict[str, str], prefix: str) -> str:
    found = [body for head, body in steps.items() if head.startswith(prefix)]
    assert len(found) == 1, f"one step starting {prefix!r} expected in {list(steps)}"
    return found[0]


def table_rows(text: str) -> list[dict[str, str]]:
    """Rows of the ``kubectl get``-style tables in ``text``, keyed by column name."""
    rows: list[dict[str, str]] = []
    header: list[str] = []
    for line in text.splitlines():
        cells = line.split()
        if cells[:1] == ["NAME"]:
            header = cells
        elif header and len(cells) == len(header):
            rows.append(dict(zip(header, cells, strict=True)))
        else:
            header = []
    return rows


def calls_per_pod(text: str) -> dict[str, int]:
    """The ``pod #### n`` lines: calls each pod answered (the bar must agree with n)."""
    spread: dict[str, int] = {}
    for line in text.splitlines():
        if m := SPREAD_ROW.match(line):
            assert len(m["bar"]) == int(m["calls"]), line
            spread[m["pod"]] = int(m["calls"])
    return spread


def test_demo_runs_the_whole_pipeline() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "demo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    steps = sections(done.stdout)
    greeter = {"NAME": "greeter", "SERVICE": "greeter", "PORT": "grpc", "STATUS": "Published"}

    # The operator published the 3 ready pods, and the client's calls reached all of them.
    assert {**greeter, "READY": "3"}.items() <= table_rows(step(steps, "kubectl apply"))[0].items()
    first = calls_per_pod(step(steps, "kuberesolver.insecure_channel"))
    assert set(first) == {"greeter-1", "greeter-2", "greeter-3"}
    assert sum(first.values()) == 60

    # It followed the scale-up with the same channel...
    scaled = step(steps, "Scale up")
    assert {**greeter, "READY": "4"}.items() <= table_rows(scaled)[0].items()
    assert set(calls_per_pod(scaled)) == {"greeter-1", "greeter-2", "greeter-3", "greeter-4"}

    # ...and drained the pod that stopped being ready.
    drained = step(steps, "greeter-2 fails its readiness probe")
    assert set(calls_per_pod(drained)) == {"greeter-1", "greeter-3", "greeter-4"}

    assert list(steps)[-1].endswith("Control plane stopped."), list(steps)[-1]
