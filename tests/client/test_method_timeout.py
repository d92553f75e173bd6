"""``methodConfig`` timeouts end calls on time: the library sets them as call deadlines.

grpcio's C core ends a call under a service-config timeout 1-2 s early, so
the library does not serve it to grpc: it gives each call that sets no shorter
``timeout`` the configured one. Checked against a real server that is slower
than the timeout: the call ends DEADLINE_EXCEEDED after 1.00-1.05 s.
"""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

import kuberesolver
import kuberesolver.aio
from kuberesolver.client.calls import timeout_for
from kuberesolver.core.service_config import method_rules
from tests.client._support import SERVICE, TARGET, UNARY, Backends, make_snapshot, publish

ONE_SECOND = {"methodConfig": [{"name": [{"service": SERVICE}], "timeout": "1s"}]}


def _status_and_elapsed(call: grpc.UnaryUnaryMultiCallable, **kw: object) -> tuple[object, float]:
    start = time.monotonic()
    try:
        call(b"", **kw)
        code: object = grpc.StatusCode.OK
    except grpc.RpcError as exc:
        code = exc.code()  # type: ignore[attr-defined]
    return code, time.monotonic() - start


def test_a_one_second_timeout_ends_the_call_after_one_second(
    backends: Backends, root: Path, snapdir: Path
) -> None:
    slow = backends("127.0.0.2", "slow")
    slow.delay_s = 3.0
    publish(snapdir, make_snapshot([slow.endpoint()], service_config=ONE_SECOND))
    with kuberesolver.insecure_channel(TARGET, snapshot_dir=root) as ch:
        # resolved and connected first (the health service has no configured timeout)
        health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10)
        code, elapsed = _status_and_elapsed(ch.unary_unary(UNARY))
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED
        assert 1.00 <= elapsed <= 1.05, elapsed
        # a shorter timeout of the call's own wins
        code, elapsed = _status_and_elapsed(ch.unary_unary(UNARY), timeout=0.3)
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED
        assert 0.30 <= elapsed < 1.0, elapsed


async def test_aio_calls_get_the_configured_deadline(
    backends: Backends, root: Path, snapdir: Path
) -> None:
    slow = backends("127.0.0.2", "slow")
    slow.delay_s = 3.0
    publish(snapdir, make_snapshot([slow.endpoint()], service_config=ONE_SECOND))
    async with kuberesolver.aio.insecure_channel(TARGET, snapshot_dir=root) as ch:
        await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10)
        start = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await ch.unary_unary(UNARY)(b"")
        elapsed = time.monotonic() - start
        assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert 1.00 <= elapsed <= 1.05, elapsed


def test_the_most_specific_rule_decides() -> None:
    rules = method_rules(
        {
            "methodConfig": [
                {"name": [{}], "timeout": "9s"},
                {"name": [{"service": "a.S"}], "timeout": "2s"},
                {"name": [{"service": "a.S", "method": "NoLimit"}]},
                {"name": [{"service": "a.S", "method": "Fast"}], "timeout": "0.25s"},
            ]
        }
    )
    assert timeout_for(rules, "/a.S/Fast") == 0.25
    assert timeout_for(rules, "/a.S/Other") == 2.0
    assert timeout_for(rules, "/a.S/NoLimit") is None  # matched, and it sets none
    assert timeout_for(rules, "/b.T/Any") == 9.0
    assert timeout_for([], "/a.S/Fast") is None
