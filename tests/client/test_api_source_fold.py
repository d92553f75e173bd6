"""Direct mode's pure parts: watch events folded into endpoints, backoff, the source rule."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from kuberesolver.client.sources.api.builder import Builder, choose_source, register, unregister
from kuberesolver.client.sources.api.fold import SliceSet, build_snapshot
from kuberesolver.core.endpointslices import PortError, SliceView, service_view, slice_view

SERVICE = service_view(
    {
        "metadata": {"name": "greeter", "namespace": "ns"},
        "spec": {"ports": [{"name": "grpc", "port": 8080}, {"name": "http", "port": 80}]},
    }
)


def eps_slice(name: str, *ips: str, port: int = 50051, ready: Any = True) -> SliceView:
    return slice_view({
        "metadata": {"name": name, "resourceVersion": "7"},
        "addressType": "IPv4",
        "ports": [{"name": "grpc", "port": port, "protocol": "TCP"}],
        "endpoints": [{"addresses": [ip], "conditions": {"ready": ready}} for ip in ips],
    })  # fmt: skip


def snap(slices: SliceSet, port: str = "grpc", previous: Any = None) -> Any:
    return build_snapshot(
        SERVICE,
        slices.views,
        name="greeter",
        namespace="ns",
        port=port,
        previous=previous,
        service_config={},
    )


def test_every_slice_counts_and_duplicates_merge() -> None:
    s = SliceSet()
    s.replace([eps_slice("a", "10.0.0.1", "10.0.0.2"), eps_slice("b", "10.0.0.2", "10.0.0.3")])
    assert [e.address for e in snap(s).endpoints] == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]


def test_deleted_removes_a_slice_and_is_never_its_state() -> None:
    s = SliceSet()
    s.replace([eps_slice("a", "10.0.0.1"), eps_slice("b", "10.0.0.2")])
    assert s.apply("DELETED", eps_slice("b", "10.0.0.2"))
    assert [e.address for e in snap(s).endpoints] == ["10.0.0.1"]
    assert not s.apply("DELETED", eps_slice("b", "10.0.0.2"))


def test_scale_to_zero_empties_and_moves_the_revision() -> None:
    s = SliceSet()
    s.replace([eps_slice("a", "10.0.0.1")])
    first = snap(s)
    assert s.apply("MODIFIED", eps_slice("a"))
    empty = snap(s, previous=first)
    assert empty.endpoints == ()
    assert empty.revision == first.revision + 1
    assert snap(s, previous=empty).revision == empty.revision  # unchanged: same revision


def test_ready_null_is_ready_and_ports_follow_each_slice() -> None:
    s = SliceSet()
    s.replace([eps_slice("a", "10.0.0.1", ready=None), eps_slice("b", "10.0.0.2", port=9000)])
    got = {(e.address, e.port, e.ready) for e in snap(s, port="8080").endpoints}
    assert got == {("10.0.0.1", 50051, True), ("10.0.0.2", 9000, True)}


def test_a_port_the_service_lacks_is_an_error() -> None:
    with pytest.raises(PortError, match="has no port 'nope'"):
        snap(SliceSet(), port="nope")


def test_the_source_rule() -> None:
    assert choose_source("kubernetes", None) == "file"
    assert choose_source("kubernetes", "API") == "api"
    register(Builder(None, "dm-test"))
    try:
        assert choose_source("dm-test", None) == "api"
        assert choose_source("dm-test", "file") == "file"
    finally:
        unregister("dm-test")
    assert choose_source("dm-test", None) == "file"
    with pytest.raises(ValueError, match="'file', 'api' or 'operator'"):
        choose_source("kubernetes", "dns")


def test_import_kuberesolver_does_not_load_the_kubernetes_client() -> None:
    code = (
        "import sys, kuberesolver; kuberesolver.register_in_cluster(); "
        "print(sorted(m for m in sys.modules if m == 'kubernetes' or m.startswith('kubernetes.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
