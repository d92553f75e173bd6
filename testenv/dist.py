"""``make dist``: the release artifacts in ./dist, with their sizes and sha256 digests.

- the wheel and the sdist (``python -m build``);
- the operator and projector images as OCI archives (testenv.images: buildah
  on the local Debian base; load one with ``skopeo copy oci-archive:F
  docker://REGISTRY/NAME:TAG`` or ``podman load -i F``);
- the packaged Helm chart (``helm package charts/kuberesolver``, with the helm
  that testenv builds);
- an SPDX SBOM of each image (Debian's packages and the venv's), by syft, built
  from the Go module proxy into the cache on first use;
- ``SHA256SUMS`` over all of them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from testenv.images import ensure_images
from testenv.images._cache import cache_dir, locked
from testenv.tools import tools_dir

ROOT = Path(__file__).resolve().parent.parent
DIST = ROOT / "dist"
SYFT_MODULE = "github.com/anchore/syft"
SYFT_VERSION = "v1.57.2"
RELEASE_IMAGES = ("operator", "projector")


def sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def syft() -> Path:
    """syft at ``SYFT_VERSION``, built (a few minutes, once) into the cache when missing."""
    bin_dir = cache_dir().parent / "tools" / f"syft-{SYFT_VERSION}"
    binary = bin_dir / "syft"
    if binary.is_file():
        return binary
    with locked():
        if not binary.is_file():
            print(f"building syft {SYFT_VERSION} from the Go module proxy", file=sys.stderr)
            env = {
                **os.environ,
                "GOBIN": str(bin_dir),
                "CGO_ENABLED": "0",
                "GOFLAGS": "-buildvcs=false",
            }
            subprocess.run(
                ["nice", "-n", "10", "go", "install", "-trimpath",
                 f"-ldflags=-s -w -X main.version={SYFT_VERSION.removeprefix('v')}",
                 f"{SYFT_MODULE}/cmd/syft@{SYFT_VERSION}"],
                check=True,
                env=env,
            )  # fmt: skip
    return binary


def python_dists(out: Path) -> list[Path]:
    with tempfile.TemporaryDirectory(prefix="kuberesolver-dist-") as tmp:
        subprocess.run(
            [sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", tmp, str(ROOT)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        return [Path(shutil.move(p, out / p.name)) for p in sorted(Path(tmp).iterdir())]


def chart(out: Path) -> Path:
    done = subprocess.run(
        [
            str(tools_dir() / "helm"),
            "package",
            str(ROOT / "charts/kuberesolver"),
            "--destination",
            str(out),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return Path(done.stdout.strip().rsplit(" ", 1)[-1])


def images_and_sboms(out: Path, version: str) -> list[Path]:
    made = []
    built = ensure_images(RELEASE_IMAGES)
    scanner = syft()
    for name in RELEASE_IMAGES:
        archive = out / f"kuberesolver-{name}-{version}.oci.tar"
        shutil.copyfile(built[name].archive, archive)
        sbom = out / f"kuberesolver-{name}-{version}.spdx.json"
        subprocess.run(
            [
                str(scanner),
                "scan",
                f"oci-archive:{archive}",
                "--quiet",
                "--output",
                f"spdx-json={sbom}",
            ],
            check=True,
            env={**os.environ, "SYFT_CHECK_FOR_APP_UPDATE": "false"},
        )
        made += [archive, sbom]
    return made


def main() -> int:
    if DIST.exists():
        shutil.rmtree(DIST)
    DIST.mkdir()
    made = python_dists(DIST)
    wheel = next(p for p in made if p.suffix == ".whl")
    version = wheel.name.split("-")[1]
    made += images_and_sboms(DIST, version)
    made.append(chart(DIST))
    sums = [f"{sha256(p)}  {p.name}" for p in made]
    (DIST / "SHA256SUMS").write_text("\n".join(sums) + "\n")
    width = max(len(p.name) for p in made)
    for path, line in zip(made, sums, strict=True):
        mib = path.stat().st_size / 2**20
        print(f"{path.name:<{width}}  {mib:8.1f} MiB  sha256:{line.split()[0]}")
    print(f"{len(made)} artifacts in {DIST} (SHA256SUMS beside them)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
