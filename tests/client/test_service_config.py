"""The snapshot's service config, applied by grpcio itself: real servers, real snapshot files.

methodConfig timeouts end slow calls, retry policies retry, per-method names
pick the most specific rule, and outlier detection (gRFC A50) ejects a backend
that accepts connections but never answers. grpc's xDS client must ACK all of
it: a NACK is logged as an error, and would leave the channel without routes.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

import kuberesolver
from kuberesolver.service_config import OUTLIER_DEFAULTS, outlier_detection
from tests.client._support import (
    SERVER_STREAM,
    SERVICE,
    UNARY,
    Backend,
    make_snapshot,
    publish,
)

TARGET = "kubernetes:///greeter.ns:grpc"
Backends = Callable[..., Backend]


@pytest.fixture(autouse=True)
def _no_nacks(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """grpc's xDS client accepted every resource we served."""
    caplog.set_level(logging.INFO, logger="kuberesolver")
    yield
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert not refused, refused


def _retry(codes: list[str]) -> dict[str, Any]:
    return {
        "maxAttempts": 3,
        "initialBackoff": "0.01s",
        "maxBackoff": "0.05s",
        "backoffMultiplier": 2,
        "retryableStatusCodes": codes,
    }


def test_method_timeouts_most_specific_first(backends: Backends, root: Path, snapdir: Path) -> None:
    a = backends("127.0.0.2", "a")
    a.delay_s = 1.0
    config = {
        "methodConfig": [
            {"name": [{}], "timeout": "0.2s"},  # the default: would end every call
            {"name": [{"service": SERVICE}], "timeout": "5s"},
            {"name": [{"service": SERVICE, "method": "Unary"}], "timeout": "0.2s"},
        ]
    }
    publish(snapdir, make_snapshot([a.endpoint()], service_config=config))
    with kuberesolver.insecure_channel(TARGET, snapshot_dir=root) as ch:
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as err:
            ch.unary_unary(UNARY)(b"", timeout=30)
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - started < 0.9  # the 0.2 s route timeout, not the 30 s
        # the service's rule, not the default's, for its other methods
        assert list(ch.unary_stream(SERVER_STREAM)(b"1", timeout=30)) == [b"a|0"]


class _FailsFirstAttempt(Backend):
    """Fails the first attempt of each distinct request with RESOURCE_EXHAUSTED."""

    def __init__(self, host: str, name: str) -> None:
        self.seen: set[bytes] = set()
        super().__init__(host, name)

    def _unary(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self._seen(context)
        if request not in self.seen:
            self.seen.add(request)
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "first attempt fails")
        return self._reply(context, request)


def test_retry_policy_retries_the_codes_it_names(root: Path, snapdir: Path) -> None:
    a = _FailsFirstAttempt("127.0.0.2", "a")
    try:
        unary = {"service": SERVICE, "method": "Unary"}
        retry = _retry(["RESOURCE_EXHAUSTED"])
        config = {"methodConfig": [{"name": [unary], "retryPolicy": retry}]}
        publish(snapdir, make_snapshot([a.endpoint()], service_config=config))
        with kuberesolver.insecure_channel(TARGET, snapshot_dir=root) as ch:
            assert ch.unary_unary(UNARY)(b"one", timeout=5) == b"a||3"
            assert a.calls == 2
    finally:
        a.stop()


def test_without_a_retry_policy_the_first_failure_is_final(root: Path, snapdir: Path) -> None:
    a = _FailsFirstAttempt("127.0.0.2", "a")
    try:
        publish(snapdir, make_snapshot([a.endpoint()]))
        with kuberesolver.insecure_channel(TARGET, snapshot_dir=root) as ch:
            with pytest.raises(grpc.RpcError) as err:
                ch.unary_unary(UNARY)(b"one", timeout=5)
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert a.calls == 1
    finally:
        a.stop()


class _Stalled(Backend):
    """Completes the HTTP/2 handshake, then never answers a call (until it is cancelled)."""

    def _unary(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self._seen(context)
        done = threading.Event()
        context.add_callback(done.set)  # the client's deadline ends the call
        while not done.wait(1) and not self.release.is_set():
            pass
        context.abort(grpc.StatusCode.UNAVAILABLE, "stalled")
        raise AssertionError("unreachable")


RATE_PER_S = 100
DURATION_S = 8.0
WINDOW_FROM_S = 5.0


def _stalled_share(ch: grpc.Channel) -> tuple[float, int]:
    """Open-loop load (calls with a 1 s deadline); the failed share of calls started late."""
    call = ch.unary_unary(UNARY)
    futures: list[tuple[float, grpc.Future]] = []
    start = time.monotonic()
    n = 0
    while (now := time.monotonic() - start) < DURATION_S:
        futures.append((now, call.future(b"", timeout=1.0)))
        n += 1
        pause = start + n / RATE_PER_S - time.monotonic()  # pacing, not a wait for a condition
        if pause > 0:
            time.sleep(pause)
    late = [f for t, f in futures if t >= WINDOW_FROM_S]
    codes = [f.code() for f in late]  # waits for each call's end
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.DEADLINE_EXCEEDED}, set(codes)
    return codes.count(grpc.StatusCode.DEADLINE_EXCEEDED) / len(late), len(late)


@pytest.mark.parametrize("outlier_detection", [False, True], ids=["off", "on"])
def test_outlier_detection_ejects_a_stalled_backend(
    backends: Backends, root: Path, snapdir: Path, outlier_detection: bool
) -> None:
    good = [backends("127.0.0.2", "a", workers=16), backends("127.0.0.3", "b", workers=16)]
    stalled = _Stalled("127.0.0.4", "stalled", workers=128)
    try:
        snap = make_snapshot([b.endpoint() for b in [*good, stalled]])
        if outlier_detection:
            snap = dataclasses.replace(snap, outlier_detection=OUTLIER_DEFAULTS)
        publish(snapdir, snap)
        with kuberesolver.insecure_channel(TARGET, snapshot_dir=root) as ch:
            share, n = _stalled_share(ch)
    finally:
        stalled.stop()
    assert n > 0.8 * RATE_PER_S * (DURATION_S - WINDOW_FROM_S)
    if outlier_detection:
        # ejected within seconds: from 5 s on, under 5% of calls still go to it
        assert share < 0.05, f"{share:.1%} of {n} late calls failed"
    else:  # round_robin alone keeps sending it a third of the calls
        assert 0.2 < share < 0.5, f"{share:.1%} of {n} late calls failed"


def test_grpc_accepts_every_field_at_its_limits(
    backends: Backends, root: Path, snapdir: Path
) -> None:
    a = backends("127.0.0.2", "a")
    a.delay_s = 0.2
    retry = _retry(["CANCELLED", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "INTERNAL", 14])
    retry.update(maxAttempts=5, initialBackoff="0.000000001s", maxBackoff="315576000000s")
    config = {
        "methodConfig": [
            {"name": [{}], "timeout": "315576000000.999999999s", "retryPolicy": retry},
            {"name": [{"service": SERVICE, "method": "Unary"}], "timeout": "0.000000001s"},
        ]
    }
    od = outlier_detection(
        {
            "interval": "315576000000s",
            "baseEjectionTime": "0.000000001s",
            "maxEjectionTime": "315576000000s",
            "maxEjectionPercent": 100,
            "successRateEjection": {
                "stdevFactor": 2**32 - 1,
                "enforcementPercentage": 100,
                "minimumHosts": 0,
                "requestVolume": 2**32 - 1,
            },
            "failurePercentageEjection": {
                "threshold": 100,
                "enforcementPercentage": 0,
                "minimumHosts": 2**32 - 1,
                "requestVolume": 0,
            },
        }
    )
    snap = make_snapshot([a.endpoint()], service_config=config)
    publish(snapdir, dataclasses.replace(snap, outlier_detection=od))
    with kuberesolver.insecure_channel(TARGET, snapshot_dir=root) as ch:
        assert list(ch.unary_stream(SERVER_STREAM)(b"1", timeout=5)) == [b"a|0"]
        with pytest.raises(grpc.RpcError) as err:  # the 1 ns timeout of its own route
            ch.unary_unary(UNARY)(b"", timeout=5)
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert ch.lease.accepted_revision == 1
