"""Go programs of the test environment, built once from the module proxy into the testenv cache."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

__all__ = ["cached_go_binary"]


def cached_go_binary(module: Path, version_dir: str, name: str, what: str) -> Path:
    """``<cache>/<version_dir>/<name>``, built from ``module`` when missing.

    The cache is ``$KUBERESOLVER_TESTENV_CACHE`` (default ``~/.cache/kuberesolver-testenv``);
    ``version_dir`` names the version, so a new one builds afresh. The build runs
    niced and lands under a temporary name, so an interrupted one leaves no binary.
    """
    cache = Path(
        os.environ.get("KUBERESOLVER_TESTENV_CACHE", Path.home() / ".cache/kuberesolver-testenv")
    )
    binary = cache / version_dir / name
    if not binary.is_file():
        binary.parent.mkdir(parents=True, exist_ok=True)
        print(f"building {binary} ({what})", file=sys.stderr)
        partial = binary.with_name(f".{name}.partial")
        subprocess.run(
            ["nice", "-n", "10", "go", "build", "-trimpath", "-o", str(partial), "."],
            cwd=module,
            check=True,
            env={**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-buildvcs=false"},
        )
        partial.replace(binary)
    return binary
