"""Build the images with buildah (as root, no registry) into OCI archives cached by their inputs.

An image's key is a digest of everything its build reads: the Dockerfile, the
files of its build context (the pins, every wheel of the wheelhouse, the test
images' scripts), the base image's recipe and the build arguments. Its archive,
``<cache>/oci/<name>-<key>.tar``, is built only when missing, so a run with
nothing changed reuses it; the image is also tagged ``<repository>:<key>`` in
buildah's storage.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from testenv import go_kuberesolver
from testenv.images import base, wheelhouse
from testenv.images._cache import ROOT, cache_dir, digest, files_digest, locked

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Spec:
    """One image: a target of a Dockerfile."""

    name: str
    repository: str
    dockerfile: Path
    target: str
    scripts: tuple[str, ...] = ()
    """Files beside this module that a test image copies (its context is assembled)."""
    go_binary: bool = False
    """Its context is Go's kuberesolver client binary alone (testenv.go_kuberesolver)."""

    @property
    def product(self) -> bool:
        return self.dockerfile == _PRODUCT


_PRODUCT = ROOT / "Dockerfile"
_TESTS = HERE / "Dockerfile"
IMAGES: dict[str, Spec] = {
    s.name: s
    for s in (
        Spec("operator", "localhost/kuberesolver-operator", _PRODUCT, "operator"),
        Spec("projector", "localhost/kuberesolver-projector", _PRODUCT, "projector"),
        Spec("backend", "localhost/kuberesolver-test-backend", _TESTS, "backend", ("backend.py",)),
        Spec("client", "localhost/kuberesolver-test-client", _TESTS, "client", ("client.py",)),
        Spec(
            "go-kuberesolver",
            "localhost/kuberesolver-test-go-kuberesolver",
            go_kuberesolver.MODULE / "Dockerfile",
            "client",
            go_binary=True,
        ),
    )
}
PRODUCT_CONTEXT = ("constraints.txt", "wheelhouse")
"""What the product Dockerfile copies from the repository (its .dockerignore admits no more)."""


@dataclass(frozen=True)
class BuiltImage:
    """A built image: its reference (``repository:tag``) and its OCI archive."""

    name: str
    repository: str
    tag: str
    archive: Path

    @property
    def ref(self) -> str:
        return f"{self.repository}:{self.tag}"


def ensure_images(names: Iterable[str] | None = None) -> dict[str, BuiltImage]:
    """Build what is missing and return every named image (default: all of ``IMAGES``)."""
    specs = [IMAGES[n] for n in (names or IMAGES)]
    with locked():
        the_base = base.ensure_base_locked()
        wheels = wheelhouse.ensure_wheelhouse(wheelhouse.all_extras())
        version = project_version(wheels)
        built = {}
        for spec in specs:
            with context_of(spec) as (context, files):
                key = image_key(spec, context, files, the_base)
                image = BuiltImage(spec.name, spec.repository, key[:16], archive_path(spec, key))
                if not image.archive.is_file():
                    _build(spec, context, image, the_base, version)
                    _prune(spec)
                built[spec.name] = image
    return built


def ensure_in_storage(image: BuiltImage) -> str:
    """Make sure buildah's storage holds the image (from its archive if need be); its ref."""
    if not base.image_exists(image.ref):
        with locked():
            if not base.image_exists(image.ref):
                subprocess.run(
                    ["buildah", "pull", "--quiet", f"oci-archive:{image.archive}"],
                    check=True,
                    stdout=subprocess.DEVNULL,
                )
    return image.ref


def archive_path(spec: Spec, key: str) -> Path:
    return cache_dir() / "oci" / f"{spec.name}-{key[:16]}.tar"


def project_version(wheels: Sequence[Path]) -> str:
    for wheel in wheels:
        found = re.fullmatch(r"kuberesolver-([^-]+)-.*\.whl", wheel.name)
        if found:
            return found.group(1)
    raise FileNotFoundError("the wheelhouse holds no kuberesolver wheel")


def image_key(spec: Spec, context: Path, files: list[Path], the_base: base.Base) -> str:
    """A digest of every input of the build: change one, and the image is built anew."""
    return digest(
        (
            "image", spec.name, spec.repository, spec.target, the_base.key,
            spec.dockerfile.read_text(),
            (ROOT / ".dockerignore").read_text() if spec.product else "",
            files_digest(context, files),
        )
    )  # fmt: skip


@contextmanager
def context_of(spec: Spec) -> Iterator[tuple[Path, list[Path]]]:
    """The build context and the files in it that the build may read.

    For the product images, the repository (so its .dockerignore is what a
    ``docker build`` sees) and what that admits; for the test images, a copy
    of their scripts, the pins and the wheelhouse.
    """
    if spec.product:
        files = [p for name in PRODUCT_CONTEXT for p in _files(ROOT / name)]
        yield ROOT, files
        return
    if spec.go_binary:
        binary = go_kuberesolver.go_kuberesolver_client()
        with tempfile.TemporaryDirectory(prefix=f"kuberesolver-{spec.name}-context-") as tmp:
            _link(str(binary), str(Path(tmp) / binary.name))
            yield Path(tmp), _files(Path(tmp))
        return
    with tempfile.TemporaryDirectory(prefix=f"kuberesolver-{spec.name}-context-") as tmp:
        context = Path(tmp)
        for name in (*spec.scripts, "requirements.txt"):
            _link_tree(HERE / name, context / name)
        _link_tree(ROOT / "constraints.txt", context / "constraints.txt")
        _link_tree(wheelhouse.DEFAULT_DEST, context / "wheelhouse")
        yield context, _files(context)


def _files(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]


def _link_tree(src: Path, dest: Path) -> None:
    if src.is_dir():
        shutil.copytree(src, dest, copy_function=_link)
    else:
        _link(str(src), str(dest))


def _link(src: str, dest: str) -> None:
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


def _build(spec: Spec, context: Path, image: BuiltImage, the_base: base.Base, version: str) -> None:
    print(
        f"building {image.ref} ({spec.dockerfile.relative_to(ROOT)} --target {spec.target})",
        file=sys.stderr,
    )
    start = time.monotonic()
    subprocess.run(
        [
            "buildah", "build", "--quiet", "--layers", "--pull=never", "--network=none",
            "--target", spec.target,
            "--build-arg", f"PYTHON_IMAGE={the_base.ref}",
            "--build-arg", f"VERSION={version}",
            "--file", str(spec.dockerfile),
            "--tag", image.ref,
            str(context),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    image.archive.parent.mkdir(parents=True, exist_ok=True)
    partial = image.archive.with_name(f"{image.archive.name}.partial-{os.getpid()}")
    partial.unlink(missing_ok=True)
    try:
        subprocess.run(
            ["buildah", "push", "--quiet", image.ref, f"oci-archive:{partial}:{image.ref}"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        partial.rename(image.archive)
    finally:
        partial.unlink(missing_ok=True)
    print(f"built {image.ref} in {time.monotonic() - start:.0f} s", file=sys.stderr)


KEEP = 3
"""Archives (and tags) kept per image: other worktrees' sources may still want theirs."""


def _prune(spec: Spec) -> None:
    """Drop all but the ``KEEP`` newest archives of the image, their tags and dangling layers."""
    archives = sorted(
        (cache_dir() / "oci").glob(f"{spec.name}-*.tar"), key=lambda p: p.stat().st_mtime
    )
    for old in archives[:-KEEP]:
        old.unlink(missing_ok=True)
        tag = old.name.removeprefix(f"{spec.name}-").removesuffix(".tar")
        subprocess.run(
            ["buildah", "rmi", f"{spec.repository}:{tag}"], capture_output=True, check=False
        )
    subprocess.run(["buildah", "rmi", "--prune"], capture_output=True, check=False)
