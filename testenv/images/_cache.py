"""Where the images and their inputs are cached, and the lock that serialises building them."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
"""The repository: the build context of the product images."""


def cache_dir() -> Path:
    """``$KUBERESOLVER_TESTENV_CACHE/images`` (default ``~/.cache/kuberesolver-testenv/images``),
    beside the control plane's binaries."""
    root = (
        os.environ.get("KUBERESOLVER_TESTENV_CACHE") or Path.home() / ".cache/kuberesolver-testenv"
    )
    path = Path(root) / "images"
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def locked(name: str = "") -> Iterator[None]:
    """Hold the cache's lock: one process builds at a time, the others then find its result.

    ``name`` picks a lock of its own for one part of the cache (``wheels``: the
    wheelhouse's caches), which a process holding the main lock takes too.
    """
    with (cache_dir() / f".{name}.lock" if name else cache_dir() / ".lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def digest(parts: Iterable[str | bytes]) -> str:
    """A sha256 over ``parts``, each length-prefixed so that no two lists hash alike."""
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()


def file_digest(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def tree_files(root: Path, top: Path) -> list[Path]:
    """The files under ``top`` (sorted, bytecode caches left out)."""
    return sorted(
        p
        for p in top.rglob("*")
        if p.is_file() and "__pycache__" not in p.relative_to(root).parts and p.suffix != ".pyc"
    )


def files_digest(root: Path, files: Iterable[Path]) -> str:
    """A digest of files by their path relative to ``root`` and their content."""
    return digest(part for f in files for part in (str(f.relative_to(root)), file_digest(f)))
