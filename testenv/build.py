"""Find or build the control-plane binaries (see build.sh and versions.env).

Two Kubernetes versions are supported and tested: the newest (``KUBERNETES_VERSION``,
the default) and the oldest (``KUBERNETES_OLDEST_VERSION``). ``KUBERESOLVER_TESTENV_KUBERNETES``
(``newest`` or ``oldest``) picks one for everything the process starts; the
``kubernetes`` argument overrides it for one call.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Literal, cast

HERE = Path(__file__).resolve().parent
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager")
KUBERNETES_ENV = "KUBERESOLVER_TESTENV_KUBERNETES"

Kubernetes = Literal["newest", "oldest"]


def chosen_kubernetes(kubernetes: str | None = None) -> Kubernetes:
    """``kubernetes``, else ``$KUBERESOLVER_TESTENV_KUBERNETES``, else ``newest``; checked."""
    choice = kubernetes or os.environ.get(KUBERNETES_ENV) or "newest"
    if choice not in ("newest", "oldest"):
        raise ValueError(f"{KUBERNETES_ENV} is newest or oldest, not {choice!r}")
    return cast(Kubernetes, choice)


def kubernetes_version(kubernetes: str | None = None) -> str:
    """The version (``vX.Y.Z``) of the chosen Kubernetes, from versions.env."""
    key = (
        "KUBERNETES_OLDEST_VERSION"
        if chosen_kubernetes(kubernetes) == "oldest"
        else "KUBERNETES_VERSION"
    )
    return versions()[key]


def ensure_binaries(kubernetes: str | None = None) -> Path:
    """Return the directory of cached binaries, building them first if missing.

    ``KUBERESOLVER_TESTENV_BIN`` points at a ready directory and skips the build.
    """
    choice = chosen_kubernetes(kubernetes)
    override = os.environ.get("KUBERESOLVER_TESTENV_BIN")
    if override:
        bin_dir = Path(override)
        missing = [b for b in BINARIES if not (bin_dir / b).is_file()]
        if missing:
            raise FileNotFoundError(
                f"KUBERESOLVER_TESTENV_BIN={bin_dir} lacks {', '.join(missing)}"
            )
        return bin_dir
    out = subprocess.run(
        ["bash", str(HERE / "build.sh")],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, KUBERNETES_ENV: choice},
    )
    return Path(out.stdout.strip().splitlines()[-1])


def versions() -> dict[str, str]:
    """The pinned versions, from versions.env."""
    pairs = (
        line.split("=", 1)
        for line in (HERE / "versions.env").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    return {k.strip(): v.strip() for k, v in pairs}
