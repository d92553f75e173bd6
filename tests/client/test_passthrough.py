"""Targets that are not ours go to grpc unchanged (dns:, ipv4:, host:port)."""

from __future__ import annotations

import grpc
import pytest

import kuberesolver
import kuberesolver.aio
from kuberesolver.client.channel import is_kuberesolver_target, registry
from tests.client._support import UNARY, Backends


@pytest.mark.parametrize(
    ("target", "ours"),
    [
        ("kubernetes:///greeter.ns:grpc", True),
        ("KUBERNETES:///greeter.ns:grpc", True),
        ("kubernetes:greeter", True),  # ours, so parse_target says what is wrong
        ("dns:///greeter.ns:50051", False),
        ("localhost:50051", False),
        ("ipv4:127.0.0.1:50051", False),
        ("xds:///greeter", False),
        ("unix:/tmp/sock", False),
    ],
)
def test_which_targets_are_ours(target: str, ours: bool) -> None:
    assert is_kuberesolver_target(target) is ours


@pytest.mark.parametrize("form", ["{host}:{port}", "ipv4:{host}:{port}", "dns:///localhost:{port}"])
def test_other_targets_reach_grpc_unchanged(backends: Backends, form: str) -> None:
    a = backends("127.0.0.1", "a")
    target = form.format(host=a.host, port=a.port)
    with kuberesolver.insecure_channel(target, server_name="greeter.example") as ch:
        assert isinstance(ch, grpc.Channel)
        assert ch.unary_unary(UNARY)(b"", timeout=5).startswith(b"a|")
        with pytest.raises(LookupError, match="not a kuberesolver target"):
            _ = ch.snapshot
    assert a.authorities == {"greeter.example": 1}
    assert registry().watched() == []


async def test_aio_other_targets_reach_grpc_unchanged(backends: Backends) -> None:
    a = backends("127.0.0.1", "a")
    async with kuberesolver.aio.insecure_channel(f"127.0.0.1:{a.port}") as ch:
        assert (await ch.unary_unary(UNARY)(b"", timeout=5)).startswith(b"a|")
        with pytest.raises(LookupError):
            _ = ch.snapshot
    assert registry().watched() == []


def test_a_malformed_kubernetes_target_is_refused_not_passed_through() -> None:
    with pytest.raises(ValueError, match="invalid kuberesolver target"):
        kuberesolver.insecure_channel("kubernetes:greeter")
