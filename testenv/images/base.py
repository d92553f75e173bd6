"""The local base image: Debian's python3 and nothing else, bootstrapped by mmdebstrap.

No registry is reached: mmdebstrap installs Debian's packages into a root
filesystem tarball, which buildah imports as ``localhost/kuberesolver-base``.
The tarball is cached by a digest of this recipe and made only when missing;
the image is re-imported from it when buildah's storage lacks it.

The recipe, and why: the ``essential`` variant (``minbase`` less apt, which
nothing in the images uses); the merged-/usr hook instead of the ``usrmerge``
package (which would bring perl); no manual pages, docs or translations; no
device nodes (the runtime mounts /dev). The runtime needs ``python3``, and
``libstdc++6`` for the C++ core of grpcio's manylinux wheel (which may link
the C and C++ runtimes only, and the ``essential`` set has no C++ one). The
build stage needs no more: its venv is made ``--without-pip`` and filled by
pip run from its wheel in the wheelhouse, so neither ``python3-venv`` nor
``python3-pip`` is installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from testenv.images._cache import cache_dir, digest, locked

SUITE = "bookworm"
PACKAGES = ("python3", "libstdc++6")
PYTHON_VERSION = "3.11"
"""The python3 of ``SUITE``: the wheelhouse is made for it."""
GLIBC = (2, 36)
"""The C library of ``SUITE``: the newest manylinux wheels it runs."""
REPOSITORY = "localhost/kuberesolver-base"
MMDEBSTRAP_ARGS = (
    "--variant=essential",
    f"--include={','.join(PACKAGES)}",
    "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
    "--dpkgopt=path-exclude=/usr/share/man/*",
    "--dpkgopt=path-exclude=/usr/share/info/*",
    "--dpkgopt=path-exclude=/usr/share/locale/*",
    "--dpkgopt=path-include=/usr/share/locale/locale.alias",
    "--dpkgopt=path-exclude=/usr/share/doc/*",
    "--dpkgopt=path-include=/usr/share/doc/*/copyright",
)
CONFIG = (
    "--env=LANG=C.UTF-8",
    "--env=PATH=/usr/local/bin:/usr/bin:/bin",
    "--cmd=/bin/sh",
)


@dataclass(frozen=True)
class Base:
    """The base image in buildah's storage, and the tarball it came from."""

    key: str
    rootfs: Path

    @property
    def ref(self) -> str:
        return f"{REPOSITORY}:{self.key[:16]}"


def recipe_key() -> str:
    """Changes with the recipe (the packages themselves are the mirror's of the day)."""
    return digest(("base", SUITE, *MMDEBSTRAP_ARGS, "tar-without-dev", *CONFIG))


def ensure_base() -> Base:
    """The base image, bootstrapped (about 2.5 min) and imported only when missing."""
    with locked():
        return ensure_base_locked()


def ensure_base_locked() -> Base:
    """``ensure_base``, for a caller that holds the cache's lock."""
    base = Base(recipe_key(), cache_dir() / f"base-{recipe_key()[:16]}.tar")
    if not base.rootfs.is_file():
        _bootstrap(base.rootfs)
    if not image_exists(base.ref):
        _import(base.rootfs, base.ref)
    return base


def image_exists(ref: str) -> bool:
    done = subprocess.run(
        ["buildah", "inspect", "--type", "image", ref], capture_output=True, check=False
    )
    return done.returncode == 0


def _bootstrap(rootfs: Path) -> None:
    print(f"bootstrapping the base image from Debian's packages into {rootfs}", file=sys.stderr)
    partial = rootfs.with_suffix(f".partial-{os.getpid()}")
    log = rootfs.with_suffix(".log")
    try:
        with partial.open("wb") as out, log.open("wb") as err:
            strap = subprocess.Popen(
                ["mmdebstrap", *MMDEBSTRAP_ARGS, SUITE, "-"], stdout=subprocess.PIPE, stderr=err
            )
            assert strap.stdout is not None
            subprocess.run(
                ["mmtarfilter", "--path-exclude=/dev/*"], stdin=strap.stdout, stdout=out, check=True
            )
            strap.stdout.close()
            if strap.wait() != 0:
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
                raise RuntimeError(f"mmdebstrap failed ({log}):\n{tail}")
        partial.rename(rootfs)
    finally:
        partial.unlink(missing_ok=True)


def _import(rootfs: Path, ref: str) -> None:
    container = _out(["buildah", "from", "scratch"])
    try:
        subprocess.run(
            ["buildah", "add", "--quiet", container, str(rootfs), "/"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        subprocess.run(["buildah", "config", *CONFIG, container], check=True)
        subprocess.run(
            ["buildah", "commit", "--quiet", container, ref], check=True, stdout=subprocess.DEVNULL
        )
    finally:
        subprocess.run(["buildah", "rm", container], check=False, capture_output=True)


def _out(argv: list[str]) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()
