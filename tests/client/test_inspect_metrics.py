"""``python -m kuberesolver inspect`` and the optional Prometheus metrics."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import kuberesolver
from kuberesolver.core.atomic_writer import write_atomic
from kuberesolver.core.snapshot import Endpoint
from testenv.wait import until
from tests.client._support import UNARY, Backend, make_snapshot, publish


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kuberesolver", "inspect", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_inspect_prints_what_a_client_sees(root: Path, snapdir: Path) -> None:
    publish(
        snapdir,
        make_snapshot(
            [
                Endpoint("10.0.0.1", 8080, zone="a", pod="p1"),
                Endpoint("10.0.0.2", 8080, ready=False, zone="b"),
                Endpoint("10.0.0.3", 8080, ready=False, terminating=True, zone="b"),
                Endpoint("10.0.0.1", 8080, zone="a", pod="p1"),
            ],
            revision=5,
        ),
    )
    out = _run(str(root), "--zone", "a")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("greeter.ns:grpc  revision 5  1/4 ready  policy round_robin")
    assert "serve     10.0.0.1:8080" in lines[1]
    assert lines[1].endswith("*")
    assert "skip      10.0.0.2:8080" in lines[2]
    assert "drain     10.0.0.3:8080" in lines[3]
    assert "duplicate" in lines[4]
    doc = json.loads(_run(str(snapdir), "--json").stdout)
    assert doc["revision"] == 5
    assert doc["ready"] == 1


def test_inspect_reports_unusable_and_missing(root: Path, snapdir: Path) -> None:
    write_atomic(snapdir, {"endpoints.json": b'{"version": 3}'})
    out = _run(str(root))
    assert out.returncode == 1
    assert "UNUSABLE" in out.stdout
    assert "unknown format version 3" in out.stdout
    missing = _run(str(root / "nothing"))
    assert missing.returncode == 1
    assert "no snapshot under" in missing.stderr


def test_metrics_follow_the_snapshot(
    backends: Callable[..., Backend], root: Path, snapdir: Path
) -> None:
    prom = pytest.importorskip("prometheus_client")
    from kuberesolver.client import metrics

    assert metrics.ENABLED
    a = backends("127.0.0.2")
    publish(snapdir, make_snapshot([a.endpoint()], revision=3))

    def value(name: str, **labels: str) -> float | None:
        return prom.REGISTRY.get_sample_value(name, labels)  # type: ignore[no-any-return]

    label = "greeter.ns:grpc"
    with kuberesolver.insecure_channel(
        "kubernetes:///greeter.ns:grpc", snapshot_dir=root, registry=prom.REGISTRY
    ) as ch:
        ch.unary_unary(UNARY)(b"", timeout=5)
        assert value("kuberesolver_revision", target=label) == 3
        assert value("kuberesolver_endpoints", target=label, state="ready") == 1
        before = value("kuberesolver_updates_total", target=label, result="applied") or 0
        publish(snapdir, make_snapshot([a.endpoint(), Endpoint("127.0.0.9", 1)], revision=4))
        until(lambda: value("kuberesolver_revision", target=label) == 4, timeout_s=10)
        assert value("kuberesolver_endpoints", target=label, state="ready") == 2
        assert value("kuberesolver_updates_total", target=label, result="applied") == before + 1
        assert (value("kuberesolver_last_update_timestamp_seconds", target=label) or 0) > 0
        rejected = value("kuberesolver_updates_total", target=label, result="rejected") or 0
        write_atomic(snapdir, {"endpoints.json": b"garbage"})
        until(
            lambda: (
                value("kuberesolver_updates_total", target=label, result="rejected") == rejected + 1
            ),
            timeout_s=10,
        )
