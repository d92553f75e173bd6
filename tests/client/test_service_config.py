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
import kuberesolver.aio
from kuberesolver.client.channel import registry
from kuberesolver.core.service_config import OUTLIER_DEFAULTS, outlier_detection
from kuberesolver.xds.resources import LISTENER_TYPE, build_listener, listener_name
from testenv.wait import until
from tests.client._support import (
    SERVER_STREAM,
    SERVICE,
    TARGET,
    UNARY,
    Backend,
    Backends,
    make_snapshot,
    publish,
)


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


def _timed(ch: grpc.Channel) -> None:
    """Serve ``ch``'s listener with its methodConfig timeouts, which grpcio gets without."""
    ads = registry().ads
    assert ads is not None
    spec = dataclasses.replace(ch.lease.spec, method_timeouts=True)
    ads.publish({LISTENER_TYPE: {listener_name(spec.name): build_listener(spec, ch.snapshot)}})


def _ended_by_deadline(call: Callable[[], object]) -> float | None:
    """Seconds until ``call`` ended with DEADLINE_EXCEEDED, or None if it ended otherwise."""
    started = time.monotonic()
    try:
        call()
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            return time.monotonic() - started
    return None


def test_timeouts_are_not_served_to_grpcio_but_applied_by_the_library(
    backends: Backends, root: Path, snapdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    a = backends("127.0.0.2", "a")
    a.delay_s = 0.3
    config = {"methodConfig": [{"name": [{"service": SERVICE}], "timeout": "1s"}]}
    publish(snapdir, make_snapshot([a.endpoint()], service_config=config))
    with kuberesolver.insecure_channel(TARGET, snapshot_dir=root) as ch:
        # grpcio would end this 1 s call at once (0.3 s of work): the library sets the
        # deadline on the call instead (tests/client/test_method_timeout.py)
        assert ch.unary_unary(UNARY)(b"", timeout=5) == b"a||0"
    assert "grpcio ends such calls" not in caplog.text  # applied: nothing to warn about


def test_served_timeouts_end_calls_most_specific_first_but_grpcio_ends_them_early(
    backends: Backends, root: Path, snapdir: Path
) -> None:
    """A canary: when grpcio fixes grpc/grpc#34547, this fails; then serve timeouts to it."""
    a = backends("127.0.0.2", "a")
    a.delay_s = 1.5
    config = {
        "methodConfig": [
            {"name": [{}], "timeout": "0.001s"},  # the default: would end every call
            {"name": [{"service": SERVICE}], "timeout": "30s"},
            {"name": [{"service": SERVICE, "method": "Unary"}], "timeout": "2s"},
        ]
    }
    publish(snapdir, make_snapshot([a.endpoint()], service_config=config))
    with kuberesolver.insecure_channel(TARGET, snapshot_dir=root) as ch:
        unary = ch.unary_unary(UNARY)
        _timed(ch)
        took = until(lambda: _ended_by_deadline(lambda: unary(b"", timeout=30)), timeout_s=20)
        # 2 s asked for; grpcio ends it before the 1.5 s reply (measured: 0.7 s)
        assert took < 1.4, took
        # the service's rule (30 s), not the default's (1 ms), for its other methods
        assert list(ch.unary_stream(SERVER_STREAM)(b"1", timeout=30)) == [b"a|0"]


class _FailsFirstAttempt(Backend):
    """Fails the first attempt of each call (by its ``x-id``) with RESOURCE_EXHAUSTED."""

    def __init__(self, host: str, name: str) -> None:
        self.ids: set[str] = set()
        super().__init__(host, name)

    def _seen(self, context: grpc.ServicerContext) -> None:
        super()._seen(context)
        call_id = dict(context.invocation_metadata()).get("x-id", "")
        if call_id not in self.ids:
            self.ids.add(call_id)
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "first attempt fails")


def _id(name: str) -> tuple[tuple[str, str], ...]:
    return (("x-id", name),)


def test_retry_policies_most_specific_first(root: Path, snapdir: Path) -> None:
    a = _FailsFirstAttempt("127.0.0.2", "a")
    try:
        retry = _retry(["RESOURCE_EXHAUSTED"])
        config = {
            "methodConfig": [
                {"name": [{}], "retryPolicy": retry},
                {"name": [{"service": SERVICE}], "timeout": "30s"},  # no retry policy
                {"name": [{"service": SERVICE, "method": "Unary"}], "retryPolicy": retry},
            ]
        }
        publish(snapdir, make_snapshot([a.endpoint()], service_config=config))
        with kuberesolver.insecure_channel(TARGET, snapshot_dir=root) as ch:
            assert ch.unary_unary(UNARY)(b"one", timeout=5, metadata=_id("u")) == b"a||3"
            assert a.calls == 2  # retried
            with pytest.raises(grpc.RpcError) as err:
                list(ch.unary_stream(SERVER_STREAM)(b"1", timeout=5, metadata=_id("s")))
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert a.calls == 3  # the service's rule has no retry policy: not retried
    finally:
        a.stop()


async def test_aio_channels_retry_too(root: Path, snapdir: Path) -> None:
    a = _FailsFirstAttempt("127.0.0.2", "a")
    try:
        config = {"methodConfig": [{"name": [{}], "retryPolicy": _retry(["RESOURCE_EXHAUSTED"])}]}
        publish(snapdir, make_snapshot([a.endpoint()], service_config=config))
        async with kuberesolver.aio.insecure_channel(TARGET, snapshot_dir=root) as ch:
            assert await ch.unary_unary(UNARY)(b"", timeout=5, metadata=_id("u")) == b"a||0"
            assert a.calls == 2
    finally:
        a.stop()


def test_without_a_retry_policy_the_first_failure_is_final(root: Path, snapdir: Path) -> None:
    a = _FailsFirstAttempt("127.0.0.2", "a")
    try:
        publish(snapdir, make_snapshot([a.endpoint()]))
        with kuberesolver.insecure_channel(TARGET, snapshot_dir=root) as ch:
            with pytest.raises(grpc.RpcError) as err:
                ch.unary_unary(UNARY)(b"one", timeout=5, metadata=_id("u"))
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


@pytest.mark.parametrize("where", ["off", "snapshot", "client-default"])
def test_outlier_detection_ejects_a_stalled_backend(
    backends: Backends, root: Path, snapdir: Path, where: str
) -> None:
    good = [backends("127.0.0.2", "a", workers=16), backends("127.0.0.3", "b", workers=16)]
    stalled = _Stalled("127.0.0.4", "stalled", workers=128)
    try:
        snap = make_snapshot([b.endpoint() for b in [*good, stalled]])
        if where == "snapshot":
            snap = dataclasses.replace(snap, outlier_detection=OUTLIER_DEFAULTS)
        publish(snapdir, snap)
        with kuberesolver.insecure_channel(
            TARGET, snapshot_dir=root, outlier_detection=where != "off"
        ) as ch:
            share, n = _stalled_share(ch)
    finally:
        stalled.stop()
    assert n > 0.8 * RATE_PER_S * (DURATION_S - WINDOW_FROM_S)
    if where == "off":  # round_robin alone keeps sending it a third of the calls
        assert 0.2 < share < 0.5, f"{share:.1%} of {n} late calls failed"
    else:
        # ejected within seconds: from 5 s on, under 5% of calls still go to it
        assert share < 0.05, f"{share:.1%} of {n} late calls failed"


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
        assert ch.lease.accepted_revision == 1
        _timed(ch)  # the timeouts too: the 1 ns one (served as 1 ms) of Unary's own route
        until(
            lambda: _ended_by_deadline(lambda: ch.unary_unary(UNARY)(b"", timeout=5)), timeout_s=20
        )
        assert list(ch.unary_stream(SERVER_STREAM)(b"1", timeout=5)) == [b"a|0"]
