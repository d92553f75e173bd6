"""kubelet's AtomicWriter, in pure Python: the on-disk layout of a ConfigMap volume.

kubelet writes a ConfigMap volume like this (``pkg/volume/util/atomic_writer.go``)::

    <dir>/..2026_11_26_02_55_23.123456789/endpoints.json   the files of one version
    <dir>/..data -> ..2026_11_26_02_55_23.123456789         swapped atomically
    <dir>/endpoints.json -> ..data/endpoints.json           one symlink per key

An update writes a new timestamped directory, points a ``..data_tmp`` symlink
at it, renames that over ``..data`` (one atomic step: a reader sees the old
set or the new one, never a mix), adds symlinks for new keys, removes the
symlinks of keys that disappeared and finally the old timestamped directory.
Nothing is written when the content is unchanged.

:func:`write_atomic` reproduces that layout exactly, so the projector, the
client tests and the end-to-end tests all exercise what kubelet really does.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import time
from collections.abc import Mapping
from pathlib import Path

__all__ = ["DATA_DIR_NAME", "NEW_DATA_DIR_NAME", "read_dir", "write_atomic"]

DATA_DIR_NAME = "..data"
"""The symlink that points at the current timestamped directory."""

NEW_DATA_DIR_NAME = "..data_tmp"
"""The temporary symlink renamed over :data:`DATA_DIR_NAME`."""

_FILE_MODE = 0o644
_DIR_MODE = 0o755


def write_atomic(directory: str | os.PathLike[str], files: Mapping[str, bytes]) -> bool:
    """Make ``directory`` hold exactly ``files``, in kubelet's atomic layout.

    Keys are relative paths (ConfigMap keys, optionally with ``/`` for nested
    items). Returns ``True`` when something was written, ``False`` when the
    directory already held exactly this content (no file is touched then).
    Raises :class:`ValueError` for an invalid key.
    """
    target = Path(directory)
    payload = {_clean_key(k): bytes(v) for k, v in files.items()}
    target.mkdir(parents=True, exist_ok=True)

    data_link = target / DATA_DIR_NAME
    old_ts_name = _readlink(data_link)
    old_files = read_dir(target) if old_ts_name is not None else {}
    old_top = {_top(k) for k in old_files}
    new_top = {_top(k) for k in payload}
    paths_to_remove = old_top - new_top

    if old_ts_name is not None and old_files == payload and _user_links_ok(target, new_top):
        return False

    new_ts = _new_timestamp_dir(target)
    try:
        for key, content in payload.items():
            path = new_ts / key
            if path.parent != new_ts:
                path.parent.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
            path.write_bytes(content)
            path.chmod(_FILE_MODE)
        new_ts.chmod(_DIR_MODE)

        tmp_link = target / NEW_DATA_DIR_NAME
        with contextlib.suppress(FileNotFoundError):
            tmp_link.unlink()
        os.symlink(new_ts.name, tmp_link)
        os.replace(tmp_link, data_link)
    except BaseException:
        shutil.rmtree(new_ts, ignore_errors=True)
        raise

    for name in sorted(new_top):
        _ensure_user_link(target, name)
    for name in sorted(paths_to_remove):
        path = target / name
        if path.is_symlink():
            path.unlink()
    if old_ts_name is not None and old_ts_name != new_ts.name:
        shutil.rmtree(target / old_ts_name, ignore_errors=True)
    _fsync_dir(target)
    return True


def read_dir(directory: str | os.PathLike[str]) -> dict[str, bytes]:
    """The files a reader of ``directory`` sees: ``{key: content}``.

    For kubelet's layout this reads the current ``..data`` version; for a plain
    directory it reads the regular, non-hidden files. Missing directory: ``{}``.
    """
    target = Path(directory)
    root = target / DATA_DIR_NAME
    if not root.is_dir():
        root = target
    result: dict[str, bytes] = {}
    if not root.is_dir():
        return result
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".."))
        for name in sorted(filenames):
            if name.startswith(".."):
                continue
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if root == target and name.startswith("."):
                continue
            try:
                result[rel] = path.read_bytes()
            except (FileNotFoundError, IsADirectoryError):
                continue
    return result


def _clean_key(key: str) -> str:
    if not key:
        raise ValueError("invalid key '': a key must not be empty")
    parts = key.split("/")
    if key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"invalid key {key!r}: must be a relative path without '.' or '..' parts")
    if parts[0].startswith(".."):
        raise ValueError(f"invalid key {key!r}: must not start with '..' (reserved by the layout)")
    return key


def _top(key: str) -> str:
    return key.split("/", 1)[0]


def _readlink(path: Path) -> str | None:
    try:
        return os.readlink(path)
    except (FileNotFoundError, OSError):
        return None


def _user_links_ok(target: Path, names: set[str]) -> bool:
    return all(_readlink(target / n) == f"{DATA_DIR_NAME}/{n}" for n in names)


def _ensure_user_link(target: Path, name: str) -> None:
    link = target / name
    want = f"{DATA_DIR_NAME}/{name}"
    if _readlink(link) == want:
        return
    if link.is_symlink() or link.is_file():
        link.unlink()
    elif link.is_dir():
        shutil.rmtree(link)
    os.symlink(want, link)


def _new_timestamp_dir(target: Path) -> Path:
    stamp = time.strftime("..%Y_%m_%d_%H_%M_%S", time.gmtime())
    while True:
        path = target / f"{stamp}.{secrets.randbelow(10**9):09d}"
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            continue
        return path


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
