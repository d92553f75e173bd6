"""The wheelhouse: every wheel the images and the package tests install, made on the host, cached.

The images install with ``--no-index`` from it, so their builds reach no
package index (here the registries sit behind a TLS-intercepting proxy that
an image does not trust). It holds the project's wheel, the wheels of its
dependencies and of all its extras (read from pyproject.toml, pinned by
constraints.txt) for the image's CPython and C library, and
``requirements.txt`` beside this file (pip itself, the test backend's extra).

Two caches, each made only when missing: the project's wheel, keyed by its
sources; the dependencies, keyed by the requirements, the pins and the target.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterable, Sequence
from pathlib import Path

from testenv.images import base
from testenv.images._cache import (
    ROOT,
    cache_dir,
    digest,
    file_digest,
    files_digest,
    locked,
    tree_files,
)

HERE = Path(__file__).resolve().parent
EXTRA_REQUIREMENTS = HERE / "requirements.txt"
CONSTRAINTS = ROOT / "constraints.txt"
PROJECT_SOURCES = ("pyproject.toml", "README.md", "LICENSE", "kuberesolver")
"""What the project's wheel is built from."""
DEFAULT_DEST = ROOT / "wheelhouse"
"""The build context's wheelhouse (admitted by .dockerignore, ignored by git)."""


def requirements(extras: Iterable[str]) -> list[str]:
    """The project's dependencies and those of ``extras``, as pyproject.toml lists them.

    An extra that names another (``kuberesolver[client]``) brings that one's instead.
    """
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})
    unknown = sorted(set(extras) - set(optional))
    if unknown:
        raise ValueError(f"pyproject.toml has no extra {', '.join(unknown)}")
    found = list(project["dependencies"])
    todo, seen = sorted(set(extras)), set()
    while todo:
        extra = todo.pop(0)
        if extra in seen:
            continue
        seen.add(extra)
        for r in optional[extra]:
            own = re.fullmatch(rf"{project['name']}\[([^]]+)\]", r)
            if own:
                todo += [e.strip() for e in own.group(1).split(",")]
            elif r not in found:
                found.append(r)
    return found


def all_extras() -> list[str]:
    """Every extra of pyproject.toml: the wheelhouse holds them all (the images install
    some; the package tests install each into a fresh venv)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return sorted(project.get("optional-dependencies", {}))


def platform_tags(glibc: tuple[int, int] = base.GLIBC) -> list[str]:
    """The manylinux tags a C library of version ``glibc`` runs, newest first."""
    arch = platform.machine()
    major, minor = glibc
    tags = [f"manylinux_{major}_{m}_{arch}" for m in range(minor, 4, -1)]
    legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
    return tags + [f"{name}_{arch}" for m, name in legacy.items() if m <= minor]


def project_files() -> list[Path]:
    files: list[Path] = []
    for name in PROJECT_SOURCES:
        path = ROOT / name
        files += tree_files(ROOT, path) if path.is_dir() else [path]
    return files


def ensure_wheelhouse(
    extras: Sequence[str],
    python_version: str = base.PYTHON_VERSION,
    dest: Path = DEFAULT_DEST,
) -> list[Path]:
    """Fill ``dest`` with the wheels (hard links into the cache) and return them, sorted.

    Call it under the cache's lock (``testenv.images._cache.locked``).
    """
    project, deps = cached_wheels(extras, python_version)
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for wheel in [*project.iterdir(), *deps.iterdir()]:
        try:
            os.link(wheel, dest / wheel.name)
        except OSError:
            shutil.copy2(wheel, dest / wheel.name)
    return sorted(dest.iterdir())


def cached_wheels(
    extras: Sequence[str], python_version: str = base.PYTHON_VERSION
) -> tuple[Path, Path]:
    """The cache's directories of the project's wheel and of its dependencies' wheels.

    Made when missing, under the wheelhouse's own lock: an image build in
    progress (which holds the cache's main lock for minutes) does not hold it up.
    """
    with locked("wheels"):
        return _project_wheel(), _dependencies(requirements(extras), python_version)


def _project_wheel() -> Path:
    files = project_files()
    out = cache_dir() / f"project-{files_digest(ROOT, files)[:16]}"
    if out.is_dir():
        return out
    with tempfile.TemporaryDirectory(prefix="kuberesolver-wheel-") as tmp:
        src = Path(tmp) / "src"
        for f in files:  # a clean copy: setuptools' build/ would keep removed modules
            (src / f.relative_to(ROOT)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, src / f.relative_to(ROOT))
        built = Path(tmp) / "out"
        _pip("wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", str(built), str(src))
        built.rename(out)
    return out


def _dependencies(reqs: list[str], python_version: str) -> Path:
    tags = platform_tags()
    key = digest(
        (
            "deps", python_version, *tags, *reqs,
            file_digest(CONSTRAINTS), file_digest(EXTRA_REQUIREMENTS),
        )
    )  # fmt: skip
    out = cache_dir() / f"wheels-cp{python_version.replace('.', '')}-{key[:16]}"
    if out.is_dir():
        return out
    partial = out.with_name(f"{out.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    abi = f"cp{python_version.replace('.', '')}"
    try:
        _pip(
            "download", "--only-binary=:all:", "--dest", str(partial),
            "--python-version", python_version, "--implementation", "cp", "--abi", abi,
            *(f"--platform={t}" for t in tags),
            "--constraint", str(CONSTRAINTS), "--requirement", str(EXTRA_REQUIREMENTS), *reqs,
        )  # fmt: skip
        partial.rename(out)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return out


def _pip(*args: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PIP_FIND_LINKS"}
    subprocess.run(
        [sys.executable, "-m", "pip", "--quiet", "--disable-pip-version-check", *args],
        check=True,
        env=env,
    )
