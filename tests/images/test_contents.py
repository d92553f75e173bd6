"""What the runtime images hold, and that they run: a non-root user, no pip, no compiler."""

from __future__ import annotations

from pathlib import Path

import pytest

from testenv.images import IMAGES, BuiltImage
from testenv.images.run import config, container, entrypoint, mounted, run

# The first minutes of a cold run build the images (make images does it ahead).
pytestmark = pytest.mark.timeout(1800)

PYTHON_IMAGES = [name for name, spec in IMAGES.items() if not spec.go_binary]
"""The images with a Python venv (Go's kuberesolver client is one static binary)."""
GO_IMAGES = [name for name, spec in IMAGES.items() if spec.go_binary]

BIN_DIRS = ("opt/venv/bin", "usr/local/bin", "usr/bin", "usr/sbin")
COMPILERS = ("cc", "c++", "gcc", "g++", "clang", "tcc", "ld", "as")


def pip_anywhere(root: Path) -> list[str]:
    """Every trace of pip: the module, its scripts, the wheels Debian keeps for venvs."""
    found = [
        *root.glob("opt/venv/lib/python3*/site-packages/pip"),
        *root.glob("usr/lib/python3*/*-packages/pip"),
        *root.glob("usr/local/lib/python3*/site-packages/pip"),
        *root.glob("usr/share/python-wheels/pip-*.whl"),
        *(p for d in BIN_DIRS for p in (root / d).glob("pip*")),
    ]
    return sorted(str(p.relative_to(root)) for p in found)


def compilers_in(root: Path) -> list[str]:
    found = [
        p
        for d in BIN_DIRS
        for p in (root / d).glob("*")
        if p.name in COMPILERS or p.name.startswith(("x86_64-linux-gnu-", "aarch64-linux-gnu-"))
    ]
    return sorted(str(p.relative_to(root)) for p in found)


@pytest.mark.parametrize("name", PYTHON_IMAGES)
def test_the_image_holds_no_pip_and_no_compiler(images: dict[str, BuiltImage], name: str) -> None:
    with container(images[name].ref) as cid, mounted(cid) as root:
        assert (root / "opt/venv/bin/python3").is_symlink()  # the mount is the image's root
        assert pip_anywhere(root) == []
        assert compilers_in(root) == []
    with container(images[name].ref) as cid:
        done = run(cid, ["python3", "-c", "import pip"])
    assert done.returncode != 0
    assert "No module named 'pip'" in done.stderr


@pytest.mark.parametrize("name", PYTHON_IMAGES)
def test_the_image_runs_as_10001(images: dict[str, BuiltImage], name: str) -> None:
    assert config(images[name].ref)["User"] == "10001:10001"
    with container(images[name].ref) as cid:
        done = run(cid, ["python3", "-c", "import os; print(os.getuid(), os.getgid())"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["10001", "10001"]


@pytest.mark.parametrize("name", PYTHON_IMAGES)
def test_every_compiled_module_finds_its_libraries(
    images: dict[str, BuiltImage], name: str
) -> None:
    """A manylinux wheel links only the C and C++ runtimes: the base must hold both."""
    with container(images[name].ref) as cid:
        done = run(cid, ["sh", "-c", "find /opt/venv -name '*.so*' -type f -exec ldd {} +"])
    assert done.returncode == 0, done.stderr
    assert ".so" in done.stdout  # ldd ran over something
    missing = sorted({ln.strip() for ln in done.stdout.splitlines() if "not found" in ln})
    assert missing == []


@pytest.mark.parametrize("name", GO_IMAGES)
def test_the_go_image_is_its_binary_alone_run_as_10001(
    images: dict[str, BuiltImage], name: str
) -> None:
    ref = images[name].ref
    assert config(ref)["User"] == "10001:10001"
    with container(ref) as cid, mounted(cid) as root:
        files = sorted(
            str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() or p.is_symlink()
        )
    assert files == ["kuberesolver-client"]  # no shell, no libc, no pip: nothing to exec but it


def test_the_operator_image_starts_kopf_on_the_operator(images: dict[str, BuiltImage]) -> None:
    ref = images["operator"].ref
    argv = entrypoint(ref)
    assert argv[:2] == ["kopf", "run"]
    assert argv[-2:] == ["-m", "kuberesolver.operator"]
    with container(ref) as cid:
        done = run(
            cid, ["python3", "-c", "import kopf, kuberesolver.operator; print(kopf.__name__)"]
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "kopf"
        done = run(cid, [*argv[:2], "--help"])
    assert done.returncode == 0, done.stderr
    assert "--standalone" in done.stdout


def test_the_projector_image_runs_the_projector_alone(images: dict[str, BuiltImage]) -> None:
    ref = images["projector"].ref
    assert entrypoint(ref) == ["kuberesolver-projector"]
    with container(ref) as cid:
        done = run(cid, [*entrypoint(ref), "--help"])
        assert done.returncode == 0, done.stderr
        assert "--configmap" in done.stdout
        # The [projector] extra only: the operator's dependencies are not in it.
        done = run(cid, ["python3", "-c", "import kopf"])
        assert "No module named 'kopf'" in done.stderr
        done = run(cid, ["python3", "-c", "import jinja2"])
        assert "No module named 'jinja2'" in done.stderr
