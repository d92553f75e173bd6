"""A snapshot that is not mounted yet: the channel is made, waits for it, and follows it.

As grpc does with a name it cannot resolve yet: calls that wait for ready wait,
others fail at once with UNAVAILABLE naming the missing file; ``strict=True``
(or ``KUBERESOLVER_STRICT``) raises at construction instead.
"""

from __future__ import annotations

import logging
from pathlib import Path

import grpc
import grpc.aio
import pytest

import kuberesolver
import kuberesolver.aio
from kuberesolver.client.settings import ENV_STRICT
from testenv.wait import until
from tests.client._support import SERVER_STREAM, TARGET, UNARY, Backends, make_snapshot, publish


def _unavailable_naming(error: grpc.RpcError, path: Path) -> None:
    assert error.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    assert str(path) in error.details()  # type: ignore[attr-defined]


def _answers(call: grpc.UnaryUnaryMultiCallable) -> bool:
    try:
        return bool(call(b"", timeout=5))
    except grpc.RpcError:
        return False


def test_fails_fast_naming_the_file_waits_for_ready_then_follows_it(
    backends: Backends, root: Path, snapdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="kuberesolver")
    a = backends("127.0.0.2", "a")
    missing = snapdir / "endpoints.json"
    with kuberesolver.insecure_channel(TARGET, snapshot_dir=root) as ch:
        said = [r for r in caplog.records if str(missing) in r.getMessage()]
        assert len(said) == 1, caplog.text  # one line names the missing path
        unary = ch.unary_unary(UNARY)
        with pytest.raises(grpc.RpcError) as raised:
            unary(b"", timeout=5)
        _unavailable_naming(raised.value, missing)
        with pytest.raises(grpc.RpcError) as raised:
            unary.with_call(b"", timeout=5)
        _unavailable_naming(raised.value, missing)
        failed = unary.future(b"", timeout=5)
        assert isinstance(failed.exception(), grpc.RpcError)
        _unavailable_naming(failed.exception(), missing)  # type: ignore[arg-type]
        with pytest.raises(grpc.RpcError) as raised:
            list(ch.unary_stream(SERVER_STREAM)(b"2", timeout=5))
        _unavailable_naming(raised.value, missing)

        waiting = unary.future(b"", timeout=30, wait_for_ready=True)
        ready = grpc.channel_ready_future(ch)
        assert not waiting.done()
        publish(snapdir, make_snapshot([a.endpoint()]))
        assert waiting.result().startswith(b"a|")  # held until the file appeared, then sent
        ready.result(timeout=10)
        until(lambda: _answers(unary), timeout_s=10)
        assert len(list(ch.unary_stream(SERVER_STREAM)(b"2", timeout=5))) == 2
        publish(snapdir, make_snapshot([], revision=2))  # then followed like any snapshot
        until(lambda: ch.snapshot.revision == 2, timeout_s=10)


def test_a_root_that_does_not_exist_yet_is_watched_from_its_ancestor(
    backends: Backends, tmp_path: Path
) -> None:
    a = backends("127.0.0.2", "a")
    root = tmp_path / "var" / "run" / "kuberesolver"  # none of it exists yet
    with kuberesolver.insecure_channel(TARGET, snapshot_dir=root, poll_interval_ms=60_000) as ch:
        unary = ch.unary_unary(UNARY)
        with pytest.raises(grpc.RpcError) as raised:
            unary(b"", timeout=5)
        _unavailable_naming(raised.value, root / "greeter.ns" / "endpoints.json")
        (tmp_path / "var" / "run").mkdir(parents=True)
        root.mkdir()
        # one ConfigMap mounted at the root, as some Pods do: found there too
        publish(root, make_snapshot([a.endpoint()]))
        # the poll is a minute away: only a watch of the new directories finds it in time
        until(lambda: _answers(unary), timeout_s=10)


def test_strict_raises_at_construction(
    root: Path, snapdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(kuberesolver.SnapshotNotFound, match=r"greeter\.ns"):
        kuberesolver.insecure_channel(TARGET, snapshot_dir=root, strict=True)
    monkeypatch.setenv(ENV_STRICT, "1")
    with pytest.raises(kuberesolver.SnapshotNotFound, match=r"greeter\.ns"):
        kuberesolver.insecure_channel(TARGET, snapshot_dir=root)
    with kuberesolver.insecure_channel(TARGET, snapshot_dir=root, strict=False) as ch:
        assert ch.lease.missing is not None  # the argument wins over the variable


async def test_aio_fails_fast_then_waits_for_ready(
    backends: Backends, root: Path, snapdir: Path
) -> None:
    a = backends("127.0.0.2", "a")
    async with kuberesolver.aio.insecure_channel(TARGET, snapshot_dir=root) as ch:
        unary = ch.unary_unary(UNARY)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await unary(b"", timeout=5)
        _unavailable_naming(raised.value, snapdir / "endpoints.json")
        call = unary(b"", timeout=30, wait_for_ready=True)
        publish(snapdir, make_snapshot([a.endpoint()]))
        assert (await call).startswith(b"a|")
