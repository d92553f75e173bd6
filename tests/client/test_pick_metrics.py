"""Opt-in picks per endpoint (``pick_metrics=``), counted by grpc's channelz, sync and aio."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import grpc
import pytest

import kuberesolver
import kuberesolver.aio
from kuberesolver.client import metrics
from kuberesolver.client.settings import ENV_PICK_METRICS
from kuberesolver.core.snapshot import Endpoint
from testenv.wait import until
from tests.client._support import (
    TARGET,
    UNARY,
    Backend,
    Backends,
    call_each_stream_shape,
    call_each_stream_shape_aio,
    make_snapshot,
    publish,
)

LABEL = "greeter.ns:grpc"

prom = pytest.importorskip("prometheus_client")


def picks(backend: Backend, pod: str | None = None) -> float | None:
    labels = {
        "target": LABEL,
        "endpoint": f"{backend.host}:{backend.port}",
        "pod": backend.name if pod is None else pod,
    }
    return prom.REGISTRY.get_sample_value("kuberesolver_picks_total", labels)  # type: ignore[no-any-return]


@pytest.fixture
def pods(backends: Backends, snapdir: Path) -> tuple[Backend, Backend]:
    """Two real backends, pod-a and pod-b, published as the target's endpoints."""
    a, b = backends("127.0.0.2", "pod-a"), backends("127.0.0.3", "pod-b")
    publish(snapdir, make_snapshot([a.endpoint(), b.endpoint()]))
    return a, b


def test_sync_picks_per_endpoint_unary_and_streaming(
    pods: tuple[Backend, Backend], root: Path
) -> None:
    a, b = pods
    with kuberesolver.insecure_channel(
        TARGET, snapshot_dir=root, pick_metrics=True, registry=prom.REGISTRY
    ) as ch:
        for _ in range(6):
            ch.unary_unary(UNARY)(b"", timeout=5)
        ch.unary_unary(UNARY).future(b"", timeout=5).result()
        for _ in range(3):
            call_each_stream_shape(ch)
        b.fail_with = grpc.StatusCode.INTERNAL  # a failed call was still sent there
        failed = 0
        for _ in range(4):
            try:
                ch.unary_unary(UNARY)(b"", timeout=5)
            except grpc.RpcError as e:
                failed += e.code() == grpc.StatusCode.INTERNAL
        assert failed > 0
        assert a.calls + b.calls == 20
        assert a.calls > 0
        assert b.calls > 0
        # every call has completed: channelz saw exactly what the servers saw
        assert picks(a) == a.calls
        assert picks(b) == b.calls
        assert metrics.pick_collector(prom.REGISTRY) is not None
        assert LABEL in metrics.pick_collector(prom.REGISTRY).tracked  # type: ignore[union-attr]


async def test_aio_picks_per_endpoint_unary_and_streaming(
    pods: tuple[Backend, Backend], root: Path
) -> None:
    a, b = pods
    async with kuberesolver.aio.insecure_channel(
        TARGET, snapshot_dir=root, pick_metrics=True, registry=prom.REGISTRY
    ) as ch:
        for _ in range(6):
            await ch.unary_unary(UNARY)(b"", timeout=5)
        for _ in range(3):
            await call_each_stream_shape_aio(ch)
        assert a.calls + b.calls == 15
        assert a.calls > 0
        assert b.calls > 0
        assert picks(a) == a.calls
        assert picks(b) == b.calls


def test_counts_survive_a_closed_channel_and_end_with_the_endpoint(
    pods: tuple[Backend, Backend], root: Path, snapdir: Path
) -> None:
    """Never decreasing: a closed channel's connections keep their calls; a gone endpoint ends."""
    a, b = pods
    with kuberesolver.insecure_channel(
        TARGET, snapshot_dir=root, pick_metrics=True, registry=prom.REGISTRY
    ) as ch:
        call = ch.unary_unary(UNARY)
        for _ in range(4):
            call(b"", timeout=5)
        # a second channel on other options: its own connections, the same target
        with kuberesolver.insecure_channel(
            TARGET, snapshot_dir=root, options=[("grpc.primary_user_agent", "other")]
        ) as other:
            for _ in range(4):
                other.unary_unary(UNARY)(b"", timeout=5)
            assert (picks(a), picks(b)) == (a.calls, b.calls)
        # its connections close with it; the counts stay
        until(lambda: picks(a) == a.calls and picks(b) == b.calls, timeout_s=10)
        publish(snapdir, make_snapshot([a.endpoint()], revision=2))
        until(lambda: call(b"", timeout=5) and picks(b) is None, timeout_s=10)
        call(b"", timeout=5)
        assert picks(a) == a.calls
        assert metrics.pick_collector(prom.REGISTRY).tracked == [LABEL]  # type: ignore[union-attr]
    assert metrics.pick_collector(prom.REGISTRY).tracked == []  # type: ignore[union-attr]
    assert picks(a) is None


def test_ipv6_endpoint(backends: Backends, root: Path, snapdir: Path) -> None:
    # ::1 on lo: a host with IPv6 has it, and so does the suite's own network namespace.
    b = backends("[::1]", "v6")
    publish(snapdir, make_snapshot([Endpoint("::1", b.port, pod="v6")]))
    with kuberesolver.insecure_channel(
        TARGET, snapshot_dir=root, pick_metrics=True, registry=prom.REGISTRY
    ) as ch:
        for _ in range(3):
            ch.unary_unary(UNARY)(b"", timeout=5)
        labels = {"target": LABEL, "endpoint": f"[::1]:{b.port}", "pod": "v6"}
        assert prom.REGISTRY.get_sample_value("kuberesolver_picks_total", labels) == 3


def test_pick_metrics_from_the_environment(
    backends: Backends, root: Path, snapdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = backends("127.0.0.2", "")
    publish(snapdir, make_snapshot([Endpoint(a.host, a.port)]))  # no pod name
    monkeypatch.setenv(ENV_PICK_METRICS, "true")
    with kuberesolver.insecure_channel(TARGET, snapshot_dir=root, registry=prom.REGISTRY) as ch:
        ch.unary_unary(UNARY)(b"", timeout=5)
        assert picks(a, pod="") == 1
    with kuberesolver.insecure_channel(
        TARGET, snapshot_dir=root, pick_metrics=False, registry=prom.REGISTRY
    ) as ch:
        ch.unary_unary(UNARY)(b"", timeout=5)
        assert metrics.pick_collector(prom.REGISTRY).tracked == []  # type: ignore[union-attr]
    monkeypatch.setenv(ENV_PICK_METRICS, "maybe")
    with pytest.raises(ValueError, match="KUBERESOLVER_PICK_METRICS"):
        kuberesolver.insecure_channel(TARGET, snapshot_dir=root)


def _python(code: str, root: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), str(root)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=Path(__file__).parents[2],
        env={"PATH": "/usr/bin:/bin", **env},
    )


def test_off_by_default_registers_nothing(root: Path, snapdir: Path) -> None:
    code = """
        import sys
        from pathlib import Path
        import prometheus_client, kuberesolver
        from kuberesolver.client import metrics
        from tests.client._support import UNARY, Backend, make_snapshot, publish

        a = Backend("127.0.0.2", "a")
        publish(Path(sys.argv[1]) / "greeter.ns", make_snapshot([a.endpoint()]))
        target = "kubernetes:///greeter.ns:grpc"
        with kuberesolver.insecure_channel(target, snapshot_dir=sys.argv[1]) as ch:
            ch.unary_unary(UNARY)(b"", timeout=5)
            names = {m.name for m in prometheus_client.REGISTRY.collect()}
        a.stop()
        print(metrics.pick_collector(prometheus_client.REGISTRY), "kuberesolver_picks" in names)
        print("kuberesolver_revision" in names)
    """
    out = _python(code, root, PYTHONPATH=".")
    assert out.returncode == 0, out.stderr
    # nothing in the global registry: not even the snapshot metrics, without registry=
    assert out.stdout.split() == ["None", "False", "False"]


def test_without_prometheus_client_one_warning(root: Path, snapdir: Path) -> None:
    publish(snapdir, make_snapshot([Endpoint("127.0.0.9", 1)]))
    code = """
        import sys
        sys.modules["prometheus_client"] = None  # not installed
        import logging, kuberesolver
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
        target = "kubernetes:///greeter.ns:grpc"
        for _ in range(3):
            kuberesolver.insecure_channel(target, snapshot_dir=sys.argv[1]).close()
        print("ok")
    """
    out = _python(code, root, PYTHONPATH=".", KUBERESOLVER_PICK_METRICS="1")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
    warnings = [line for line in out.stderr.splitlines() if "pick_metrics" in line]
    assert len(warnings) == 1, out.stderr
    assert warnings[0].startswith("WARNING ")
    assert "prometheus_client is not installed" in warnings[0]
