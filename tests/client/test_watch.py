"""Finding snapshots on disk and following them: kubelet's ..data swap, plain replacement."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import kuberesolver
from kuberesolver.client.sources.file import SnapshotNotFound, SnapshotWatcher, locate
from kuberesolver.client.target import parse_target
from kuberesolver.core.atomic_writer import write_atomic
from kuberesolver.core.snapshot import ENDPOINTS_KEY, Endpoint, Snapshot, encode, load
from testenv.wait import until
from tests.client._support import make_snapshot, publish

TARGET = parse_target("kubernetes:///greeter.ns:grpc")


def _other_port() -> Snapshot:
    return make_snapshot([_ep(3)], port="http", port_name="http", port_number=80)


def _ep(i: int) -> Endpoint:
    return Endpoint(f"127.0.0.{i}", 50051)


class Recorder:
    def __init__(self) -> None:
        self.seen: list[Snapshot] = []
        self.lock = threading.Lock()

    def __call__(self, snapshot: Snapshot) -> None:
        with self.lock:
            self.seen.append(snapshot)

    def revisions(self) -> list[int]:
        with self.lock:
            return [s.revision for s in self.seen]


def _watch(directory: Path, rec: Recorder, **kw: int) -> SnapshotWatcher:
    w = SnapshotWatcher(directory, TARGET, load(directory / ENDPOINTS_KEY), rec, **kw)
    w.start()
    return w


# -- locating --------------------------------------------------------------


Watching = Callable[..., tuple[SnapshotWatcher, Recorder]]


@pytest.fixture
def watching() -> Iterator[Watching]:
    """Start watchers on demand, each with its own Recorder; all are stopped after the test."""
    started: list[SnapshotWatcher] = []

    def start(directory: Path, **kw: int) -> tuple[SnapshotWatcher, Recorder]:
        rec = Recorder()
        started.append(_watch(directory, rec, **kw))
        return started[-1], rec

    yield start
    for w in started:
        w.stop()


def test_locate_per_target_directory(root: Path, snapdir: Path) -> None:
    publish(snapdir, make_snapshot([_ep(2)]))
    assert locate(root, TARGET) == snapdir


def test_locate_single_configmap_mounted_at_the_root(root: Path) -> None:
    publish(root, make_snapshot([_ep(2)]))
    assert locate(root, TARGET) == root


def test_locate_refuses_a_root_snapshot_of_another_target(root: Path) -> None:
    publish(root, make_snapshot([_ep(2)], service="other"))
    with pytest.raises(SnapshotNotFound, match=r"is for other\.ns"):
        locate(root, TARGET)


def test_missing_snapshot_names_the_directories_searched(root: Path) -> None:
    with pytest.raises(SnapshotNotFound) as info:
        kuberesolver.insecure_channel(
            "kubernetes:///greeter.ns:grpc", snapshot_dir=root, strict=True
        )
    message = str(info.value)
    assert str(root / "greeter.ns" / ENDPOINTS_KEY) in message
    assert str(root / ENDPOINTS_KEY) in message


def test_snapshot_dir_from_environment(
    root: Path, snapdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    publish(snapdir, make_snapshot([_ep(2)]))
    monkeypatch.setenv("KUBERESOLVER_DIR", str(root))
    with kuberesolver.insecure_channel("kubernetes:///greeter.ns:grpc") as ch:
        assert ch.snapshot.revision == 1


def test_argument_may_point_straight_at_the_snapshot_dir(snapdir: Path) -> None:
    publish(snapdir, make_snapshot([_ep(2)]))
    with kuberesolver.insecure_channel("kubernetes:///greeter.ns", snapshot_dir=snapdir) as ch:
        assert ch.snapshot.target.service == "greeter"


def test_port_must_match_the_snapshot(root: Path, snapdir: Path) -> None:
    publish(snapdir, make_snapshot([_ep(2)], port="grpc", port_number=50051))
    for ok in ("grpc", "50051", ""):
        target = f"kubernetes:///greeter.ns:{ok}" if ok else "kubernetes:///greeter.ns"
        kuberesolver.insecure_channel(target, snapshot_dir=root).close()
    with pytest.raises(ValueError, match="asks for port 'http'"):
        kuberesolver.insecure_channel("kubernetes:///greeter.ns:http", snapshot_dir=root)


def test_corrupt_snapshot_at_start_is_a_clear_error(root: Path, snapdir: Path) -> None:
    write_atomic(snapdir, {ENDPOINTS_KEY: b'{"version": 9}'})
    with pytest.raises(kuberesolver.SnapshotError, match="unknown format version 9"):
        kuberesolver.insecure_channel("kubernetes:///greeter.ns:grpc", snapshot_dir=root)


# -- watching --------------------------------------------------------------


def test_follows_kubelet_data_swaps(snapdir: Path, watching: Watching) -> None:
    publish(snapdir, make_snapshot([_ep(2)]))
    w, rec = watching(snapdir)
    for rev in range(2, 7):
        publish(snapdir, make_snapshot([_ep(2), _ep(rev)], revision=rev))
        until(lambda rev=rev: rec.revisions()[-1:] == [rev], timeout_s=10)
    assert w.snapshot.revision == 6
    w.stop()
    assert not w.alive


def test_unchanged_content_is_not_reapplied(snapdir: Path, watching: Watching) -> None:
    snap = make_snapshot([_ep(2)])
    publish(snapdir, snap)
    w, rec = watching(snapdir)
    # a new ..data version with the same bytes (kubelet resync)
    (snapdir / "other").write_text("x")
    os.utime(snapdir)
    assert not w.check()
    publish(snapdir, make_snapshot([_ep(3)], revision=2))
    until(lambda: rec.revisions() == [2], timeout_s=10)


def _replace_by_rename(path: Path, text: str) -> None:
    tmp = path.with_name(".endpoints.json.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _rewrite_in_place(path: Path, text: str) -> None:
    path.write_text(text)


@pytest.mark.parametrize(
    ("write", "seen"),
    [
        (_replace_by_rename, lambda revisions: revisions == [2]),  # one atomic change
        (_rewrite_in_place, lambda revisions: revisions[-1:] == [2]),  # may be read half-written
    ],
    ids=["rename", "in-place"],
)
def test_plain_file_updates_are_followed(
    snapdir: Path,
    watching: Watching,
    write: Callable[[Path, str], None],
    seen: Callable[[list[int]], bool],
) -> None:
    snapdir.mkdir()
    path = snapdir / ENDPOINTS_KEY
    path.write_text(encode(make_snapshot([_ep(2)])))
    _, rec = watching(snapdir)
    write(path, encode(make_snapshot([_ep(3)], revision=2)))
    until(lambda: seen(rec.revisions()), timeout_s=10)


@pytest.mark.parametrize(
    ("content", "logged"),
    [
        (None, "deleted; keeping the last good endpoints"),
        (b'{"version": 1, "endpo', "corrupt JSON"),
        (b"", "empty file"),
        (json.dumps({"version": 2}).encode(), "unknown format version 2"),
        (encode(make_snapshot([_ep(3)], service="other")).encode(), "is for other.ns"),
        (
            encode(make_snapshot([_ep(3)], port="http", port_name="http", port_number=80)).encode(),
            "asks for port",
        ),
    ],
)
def test_bad_updates_are_logged_and_the_last_good_is_kept(
    snapdir: Path,
    caplog: pytest.LogCaptureFixture,
    content: bytes | None,
    logged: str,
    watching: Watching,
) -> None:
    caplog.set_level(logging.ERROR, logger="kuberesolver")
    publish(snapdir, make_snapshot([_ep(2)]))
    w, rec = watching(snapdir)
    write_atomic(snapdir, {} if content is None else {ENDPOINTS_KEY: content})
    until(lambda: logged in caplog.text, timeout_s=10)
    assert w.snapshot.revision == 1
    assert rec.revisions() == []
    records = [r for r in caplog.records if r.name == "kuberesolver.watch"]
    assert records
    assert all(r.levelno == logging.ERROR for r in records)
    # and a good one afterwards is applied
    publish(snapdir, make_snapshot([_ep(4)], revision=3))
    until(lambda: rec.revisions() == [3], timeout_s=10)


def test_directory_removed_and_recreated(snapdir: Path, watching: Watching) -> None:
    import shutil

    publish(snapdir, make_snapshot([_ep(2)]))
    w, rec = watching(snapdir, poll_interval_ms=50)
    shutil.rmtree(snapdir)
    until(lambda: w.rejected >= 1, timeout_s=10)
    publish(snapdir, make_snapshot([_ep(5)], revision=2))
    until(lambda: rec.revisions() == [2], timeout_s=10)
    assert w.snapshot.endpoints == (_ep(5),)
