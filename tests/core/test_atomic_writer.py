"""kubelet's AtomicWriter layout, reproduced by kuberesolver.core.atomic_writer."""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

import pytest

from kuberesolver.core.atomic_writer import read_dir, write_atomic

TS_DIR = re.compile(r"^\.\.\d{4}_\d{2}_\d{2}_\d{2}_\d{2}_\d{2}\.\d{9}$")


def _ts_dirs(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if TS_DIR.match(p.name))


def test_first_write_creates_kubelet_layout(tmp_path: Path) -> None:
    assert write_atomic(tmp_path, {"endpoints.json": b"{}", "service-config.json": b"[]"})
    ts = _ts_dirs(tmp_path)
    assert len(ts) == 1
    assert os.readlink(tmp_path / "..data") == ts[0]
    assert os.readlink(tmp_path / "endpoints.json") == "..data/endpoints.json"
    assert os.readlink(tmp_path / "service-config.json") == "..data/service-config.json"
    assert (tmp_path / "endpoints.json").read_bytes() == b"{}"
    assert (tmp_path / ts[0] / "service-config.json").read_bytes() == b"[]"
    assert not (tmp_path / "..data_tmp").exists()
    names = {p.name for p in tmp_path.iterdir()}
    assert names == {"..data", ts[0], "endpoints.json", "service-config.json"}
    assert (tmp_path / ts[0] / "endpoints.json").stat().st_mode & 0o777 == 0o644


def test_unchanged_content_writes_nothing(tmp_path: Path) -> None:
    assert write_atomic(tmp_path, {"a": b"1"})
    before = _ts_dirs(tmp_path)
    mtime = (tmp_path / "..data").lstat().st_mtime_ns
    assert not write_atomic(tmp_path, {"a": b"1"})
    assert _ts_dirs(tmp_path) == before
    assert (tmp_path / "..data").lstat().st_mtime_ns == mtime


def test_update_swaps_data_and_removes_old_version(tmp_path: Path) -> None:
    write_atomic(tmp_path, {"a": b"1", "gone": b"x"})
    (old,) = _ts_dirs(tmp_path)
    assert write_atomic(tmp_path, {"a": b"2", "new": b"y"})
    (new,) = _ts_dirs(tmp_path)
    assert new != old
    assert os.readlink(tmp_path / "..data") == new
    assert not (tmp_path / "gone").is_symlink()
    assert (tmp_path / "a").read_bytes() == b"2"
    assert (tmp_path / "new").read_bytes() == b"y"
    assert read_dir(tmp_path) == {"a": b"2", "new": b"y"}


def test_only_removing_a_key_is_a_write(tmp_path: Path) -> None:
    write_atomic(tmp_path, {"a": b"1", "b": b"2"})
    assert write_atomic(tmp_path, {"a": b"1"})
    assert read_dir(tmp_path) == {"a": b"1"}
    assert not os.path.lexists(tmp_path / "b")


def test_nested_keys_and_empty_payload(tmp_path: Path) -> None:
    write_atomic(tmp_path, {"sub/x.json": b"1"})
    assert os.readlink(tmp_path / "sub") == "..data/sub"
    assert (tmp_path / "sub" / "x.json").read_bytes() == b"1"
    assert write_atomic(tmp_path, {})
    assert read_dir(tmp_path) == {}
    assert not os.path.lexists(tmp_path / "sub")


def test_repairs_missing_user_symlink(tmp_path: Path) -> None:
    write_atomic(tmp_path, {"a": b"1"})
    (tmp_path / "a").unlink()
    assert write_atomic(tmp_path, {"a": b"1"})
    assert (tmp_path / "a").read_bytes() == b"1"


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "..data", "..x", "a//b", "./a"])
def test_invalid_keys_rejected(tmp_path: Path, key: str) -> None:
    with pytest.raises(ValueError, match="invalid key"):
        write_atomic(tmp_path, {key: b"1"})


def test_read_dir_plain_directory(tmp_path: Path) -> None:
    (tmp_path / "endpoints.json").write_bytes(b"{}")
    (tmp_path / ".hidden").write_bytes(b"no")
    assert read_dir(tmp_path) == {"endpoints.json": b"{}"}
    assert read_dir(tmp_path / "missing") == {}


def test_readers_never_see_a_partial_version(tmp_path: Path) -> None:
    write_atomic(tmp_path, {"a": b"0", "b": b"0"})
    stop = threading.Event()
    torn: list[tuple[bytes, bytes]] = []

    def reader() -> None:
        while not stop.is_set():
            try:
                data = os.readlink(tmp_path / "..data")
                a = (tmp_path / data / "a").read_bytes()
                b = (tmp_path / data / "b").read_bytes()
            except FileNotFoundError:
                continue  # the old version was removed between the two reads
            if a != b:
                torn.append((a, b))

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(1, 200):
            v = str(i).encode()
            write_atomic(tmp_path, {"a": v, "b": v})
    finally:
        stop.set()
        t.join()
    assert torn == []
    assert len(_ts_dirs(tmp_path)) == 1
