"""Find or build the control-plane binaries (see build.sh and versions.env)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager")


def ensure_binaries() -> Path:
    """Return the directory of cached binaries, building them first if missing.

    ``KUBERESOLVER_TESTENV_BIN`` points at a ready directory and skips the build.
    """
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
        ["bash", str(HERE / "build.sh")], check=True, stdout=subprocess.PIPE, text=True
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
