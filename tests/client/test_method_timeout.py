"""``methodConfig`` timeouts end calls on time: the library sets them as call deadlines.

grpcio's C core ends a call under a service-config timeout 1-2 s early, so
the library does not serve it to grpc: it gives each call that sets no shorter
``timeout`` the configured one. Checked against a real server that is slower
than the timeout: the call ends DEADLINE_EXCEEDED after 1.00-1.05 s. The server
runs in a process of its own, so that its threads do not delay the client's.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

import kuberesolver
import kuberesolver.aio
from kuberesolver.client.calls import timeout_for
from kuberesolver.core.service_config import method_rules
from kuberesolver.core.snapshot import Endpoint
from tests.client._support import SERVICE, TARGET, UNARY, make_snapshot, publish

ONE_SECOND = {"methodConfig": [{"name": [{"service": SERVICE}], "timeout": "1s"}]}

_SLOW_SERVER = """
import sys
from tests.client._support import Backend
backend = Backend("127.0.0.2", "slow")
backend.delay_s = 3.0
print(backend.port, flush=True)
sys.stdin.read()  # until the test closes it
backend.stop()
"""


@pytest.fixture
def slow(root: Path, snapdir: Path) -> Iterator[Endpoint]:
    """A real server, in another process, that answers after 3 s; published with a 1 s
    methodConfig timeout for its service."""
    server = subprocess.Popen(
        [sys.executable, "-c", _SLOW_SERVER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[2],
    )
    assert server.stdout is not None
    assert server.stdin is not None
    endpoint = Endpoint("127.0.0.2", int(server.stdout.readline()), pod="slow")
    publish(snapdir, make_snapshot([endpoint], service_config=ONE_SECOND))
    yield endpoint
    server.stdin.close()
    server.wait(30)


def _status_and_elapsed(call: grpc.UnaryUnaryMultiCallable, **kw: object) -> tuple[object, float]:
    start = time.monotonic()
    try:
        call(b"", **kw)
        code: object = grpc.StatusCode.OK
    except grpc.RpcError as exc:
        code = exc.code()  # type: ignore[attr-defined]
    return code, time.monotonic() - start


def test_a_one_second_timeout_ends_the_call_after_one_second(slow: Endpoint, root: Path) -> None:
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


async def test_aio_calls_get_the_configured_deadline(slow: Endpoint, root: Path) -> None:
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
