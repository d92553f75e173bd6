"""The channels implement grpc's public interfaces: connectivity, readiness and typing."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import grpc
import pytest

import kuberesolver
import kuberesolver.aio
from kuberesolver.client.channel import registry
from testenv.wait import until
from tests.client._support import TARGET, UNARY, Backends, make_snapshot, publish

REPO = Path(__file__).resolve().parents[2]


def test_channel_ready_future_and_connectivity_subscriptions(
    backends: Backends, root: Path, snapdir: Path
) -> None:
    a = backends("127.0.0.2")
    publish(snapdir, make_snapshot([a.endpoint()]))
    with kuberesolver.insecure_channel(TARGET, snapshot_dir=root) as ch:
        assert isinstance(ch, grpc.Channel)
        assert isinstance(ch, kuberesolver.Channel)
        states: list[grpc.ChannelConnectivity] = []
        lock = threading.Lock()

        def seen(state: grpc.ChannelConnectivity) -> None:
            with lock:
                states.append(state)

        ch.subscribe(seen, try_to_connect=True)
        grpc.channel_ready_future(ch).result(timeout=10)
        until(lambda: grpc.ChannelConnectivity.READY in states, timeout_s=10)
        ch.unsubscribe(seen)
        assert ch.unary_unary(UNARY)(b"", timeout=5).startswith(b"127.0.0.2|")
    assert registry().watched() == []


async def test_aio_connectivity_and_idempotent_close(
    backends: Backends, root: Path, snapdir: Path
) -> None:
    a = backends("127.0.0.2")
    publish(snapdir, make_snapshot([a.endpoint()]))
    ch = kuberesolver.aio.insecure_channel(TARGET, snapshot_dir=root)
    assert isinstance(ch, grpc.aio.Channel)
    assert isinstance(ch, kuberesolver.aio.Channel)
    assert ch.snapshot.revision == 1
    assert ch.get_state() == grpc.ChannelConnectivity.IDLE
    ch.get_state(try_to_connect=True)
    await ch.channel_ready()
    assert ch.get_state() == grpc.ChannelConnectivity.READY
    await ch.close()
    await ch.close()
    assert registry().watched() == []


def test_sync_close_is_idempotent_and_with_closes(root: Path, snapdir: Path) -> None:
    publish(snapdir, make_snapshot([]))
    ch = kuberesolver.insecure_channel(TARGET, snapshot_dir=root)
    with ch as same:
        assert same is ch
    ch.close()
    assert registry().watched() == []


USER_CODE = """
import kuberesolver
import kuberesolver.aio
from kuberesolver import Snapshot


def revision(ch: kuberesolver.Channel) -> int:
    snapshot: Snapshot = ch.snapshot
    return snapshot.revision


async def aio_revision() -> int:
    async with kuberesolver.aio.insecure_channel("kubernetes:///a.b:1") as ch:
        reveal_type(ch)
        return ch.snapshot.revision


ch = kuberesolver.secure_channel("kubernetes:///a.b:1", credentials=None, server_name="a")
reveal_type(ch)
reveal_type(ch.snapshot)
"""


@pytest.mark.parametrize("bad", [False, True], ids=["typed", "a-type-error-is-seen"])
def test_user_code_type_checks_under_mypy_strict(tmp_path: Path, bad: bool) -> None:
    code = USER_CODE + ("\nwrong: str = ch.snapshot.revision\n" if bad else "")
    (tmp_path / "user.py").write_text(code)
    config = ["--config-file", str(REPO / "pyproject.toml"), "--cache-dir", str(tmp_path / "c")]
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", *config, str(tmp_path / "user.py")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    text = out.stdout
    assert 'Revealed type is "kuberesolver.client.aio.Channel"' in text, text
    assert 'Revealed type is "kuberesolver.client.channel.Channel"' in text, text
    assert 'Revealed type is "kuberesolver.core.snapshot.Snapshot"' in text, text
    errors = [line for line in text.splitlines() if ": error:" in line]
    if bad:
        assert len(errors) == 1, text
        assert "Incompatible types in assignment" in errors[0], text
    else:
        assert errors == [], text


def test_repr_names_the_class_users_import(backends: Backends, root: Path, snapdir: Path) -> None:
    a = backends("127.0.0.2", "a")
    publish(snapdir, make_snapshot([a.endpoint()]))
    with kuberesolver.insecure_channel(TARGET, snapshot_dir=root) as ch:
        assert repr(ch) == f"<kuberesolver.Channel {TARGET}>"


async def test_aio_repr_names_the_class_users_import(
    backends: Backends, root: Path, snapdir: Path
) -> None:
    a = backends("127.0.0.2", "a")
    publish(snapdir, make_snapshot([a.endpoint()]))
    async with kuberesolver.aio.insecure_channel(TARGET, snapshot_dir=root) as ch:
        assert repr(ch) == f"<kuberesolver.aio.Channel {TARGET}>"
