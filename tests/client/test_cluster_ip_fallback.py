"""The ClusterIP as grpc's lowest priority, with real grpc servers on 127.0.0.x.

Here the "ClusterIP" is a plain server address: what stands behind it (kube-
proxy) is exercised by tests/integration/test_kube_proxy.py and the rolling
update in tests/e2e/test_rolling_update.py.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import grpc
import pytest

import kuberesolver
from testenv.wait import until
from tests.client._support import TARGET, UNARY, Backends, make_snapshot, publish


def _calls(channel: grpc.Channel, n: int) -> tuple[Counter[str], int]:
    """``n`` calls with a deadline and without wait_for_ready: who answered, how many failed."""
    unary = channel.unary_unary(UNARY)
    answered: Counter[str] = Counter()
    failed = 0
    for _ in range(n):
        try:
            answered[unary(b"", timeout=2).decode().split("|")[0]] += 1
        except grpc.RpcError:
            failed += 1
    return answered, failed


def test_calls_use_the_cluster_ip_only_while_no_endpoint_answers(
    backends: Backends, root: Path, snapdir: Path
) -> None:
    pod, service, new_pod = backends("127.0.0.2"), backends("127.0.0.3"), backends("127.0.0.4")
    snap = replace(
        make_snapshot([pod.endpoint()], port_number=service.port), cluster_ips=("127.0.0.3",)
    )
    publish(snapdir, snap)
    with kuberesolver.insecure_channel(TARGET, snapshot_dir=root) as channel:
        assert _calls(channel, 50) == (Counter({"127.0.0.2": 50}), 0)

        pod.stop()  # the file is stale: it still lists only this pod
        answered, failed = _calls(channel, 200)
        assert failed == 0
        assert answered == Counter({"127.0.0.3": 200})

        publish(snapdir, replace(snap, revision=2, endpoints=(new_pod.endpoint(),)))
        until(
            lambda: _calls(channel, 10)[0] == Counter({"127.0.0.4": 10}),
            timeout_s=10,
            message="calls back on the fresh snapshot's endpoint",
        )


def test_without_the_fallback_the_same_calls_fail(
    backends: Backends, root: Path, snapdir: Path
) -> None:
    """The control: the same stale file, the fallback switched off."""
    pod, service = backends("127.0.0.2"), backends("127.0.0.3")
    snap = replace(
        make_snapshot([pod.endpoint()], port_number=service.port), cluster_ips=("127.0.0.3",)
    )
    publish(snapdir, snap)
    with kuberesolver.insecure_channel(
        TARGET, snapshot_dir=root, cluster_ip_fallback=False
    ) as channel:
        assert _calls(channel, 10) == (Counter({"127.0.0.2": 10}), 0)
        pod.stop()
        answered, failed = _calls(channel, 50)
        assert (answered, failed) == (Counter(), 50)
        assert service.calls == 0


def test_no_endpoints_at_all_go_to_the_cluster_ip(
    backends: Backends, root: Path, snapdir: Path
) -> None:
    service = backends("127.0.0.3")
    snap = replace(make_snapshot([], port_number=service.port), cluster_ips=("127.0.0.3",))
    publish(snapdir, snap)
    with kuberesolver.insecure_channel(TARGET, snapshot_dir=root) as channel:
        assert _calls(channel, 20) == (Counter({"127.0.0.3": 20}), 0)


@pytest.mark.parametrize("keepalive_ms", [1000])
def test_client_keepalive_is_accepted_by_a_server_with_default_settings(
    backends: Backends, root: Path, snapdir: Path, keepalive_ms: int
) -> None:
    """A 1 s keepalive under steady calls: no GOAWAY from a default server, one connection."""
    pod = backends("127.0.0.2")  # grpc.server() with grpc's default ping policy
    publish(snapdir, make_snapshot([pod.endpoint()]))
    with kuberesolver.insecure_channel(
        TARGET, snapshot_dir=root, keepalive_ms=keepalive_ms
    ) as channel:
        unary = channel.unary_unary(UNARY)
        failed = 0
        deadline = time.monotonic() + 6 * keepalive_ms / 1000
        while time.monotonic() < deadline:
            try:
                unary(b"", timeout=2)
            except grpc.RpcError:
                failed += 1
            time.sleep(0.01)
        assert failed == 0
        assert pod.connections == 1
