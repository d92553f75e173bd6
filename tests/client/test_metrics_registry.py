"""The client's metrics go to the registry the caller passes (``registry=``), never elsewhere."""

from __future__ import annotations

from pathlib import Path

import pytest

import kuberesolver
from testenv.wait import until
from tests.client._support import UNARY, Backends, make_snapshot, publish

prom = pytest.importorskip("prometheus_client")

TARGET = "kubernetes:///metered.ns:grpc"
LABEL = "metered.ns:grpc"  # a target no other test uses: the global registry is shared


def _revision(registry: object) -> float | None:
    return registry.get_sample_value("kuberesolver_revision", {"target": LABEL})  # type: ignore[attr-defined,no-any-return]


def test_each_channel_s_registry_gets_its_target_and_the_global_one_nothing(
    backends: Backends, root: Path
) -> None:
    a = backends("127.0.0.2", "a")
    snapdir = root / "metered.ns"
    publish(snapdir, make_snapshot([a.endpoint()], service="metered", revision=3))
    mine, theirs = prom.CollectorRegistry(), prom.CollectorRegistry()
    with kuberesolver.insecure_channel(
        TARGET, snapshot_dir=root, registry=mine, pick_metrics=True
    ) as ch:
        ch.unary_unary(UNARY)(b"", timeout=5)
        assert _revision(mine) == 3
        endpoint = {"target": LABEL, "endpoint": f"{a.host}:{a.port}", "pod": "a"}
        assert mine.get_sample_value("kuberesolver_picks_total", endpoint) == 1
        with kuberesolver.insecure_channel(TARGET, snapshot_dir=root, registry=theirs):
            assert _revision(theirs) == 3  # the target's state, from the first channel on
            with kuberesolver.insecure_channel(TARGET, snapshot_dir=root):  # no registry
                publish(snapdir, make_snapshot([a.endpoint()], service="metered", revision=4))
                until(lambda: _revision(mine) == 4 and _revision(theirs) == 4, timeout_s=10)
        # the channel that named theirs is closed: its registry no longer follows
        publish(snapdir, make_snapshot([a.endpoint()], service="metered", revision=5))
        until(lambda: _revision(mine) == 5, timeout_s=10)
        assert _revision(theirs) == 4
        assert theirs.get_sample_value("kuberesolver_picks_total", endpoint) is None
    assert _revision(prom.REGISTRY) is None
    global_picks = prom.REGISTRY.get_sample_value("kuberesolver_picks_total", endpoint)
    assert global_picks is None
