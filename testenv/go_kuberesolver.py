"""Go's sercand/kuberesolver v6 in a small client (bench/go/kuberesolver-client), built once.

The binary is static (``CGO_ENABLED=0``), built from the Go module proxy into
the testenv cache, keyed by a digest of the module's sources: a changed
``main.go`` or pin is built anew. bench/direct_latency.py runs it on the host;
testenv.images packs it into the ``go-kuberesolver`` image for the node benches.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

__all__ = ["MODULE", "go_kuberesolver_client", "kuberesolver_version"]

MODULE = Path(__file__).resolve().parents[1] / "bench/go/kuberesolver-client"
SOURCES = ("go.mod", "go.sum", "main.go")


def kuberesolver_version() -> str:
    """The github.com/sercand/kuberesolver/v6 version the module requires."""
    found = re.search(
        r"github\.com/sercand/kuberesolver/v6 (v\S+)", (MODULE / "go.mod").read_text()
    )
    if found is None:
        raise RuntimeError(f"{MODULE}/go.mod requires no github.com/sercand/kuberesolver/v6")
    return found.group(1)


def go_kuberesolver_client() -> Path:
    """The client binary; built when missing (about a minute warm)."""
    cache = Path(
        os.environ.get("KUBERESOLVER_TESTENV_CACHE", Path.home() / ".cache/kuberesolver-testenv")
    )
    sources = hashlib.sha256()
    for name in SOURCES:
        sources.update(hashlib.sha256((MODULE / name).read_bytes()).digest())
    key = sources.hexdigest()[:16]
    binary = cache / f"go-kuberesolver-{kuberesolver_version()}-{key}" / "kuberesolver-client"
    if not binary.is_file():
        binary.parent.mkdir(parents=True, exist_ok=True)
        print(f"building {binary} (Go's kuberesolver {kuberesolver_version()})", file=sys.stderr)
        partial = binary.with_name(f".kuberesolver-client.partial-{os.getpid()}")
        subprocess.run(
            ["nice", "-n", "10", "go", "build", "-trimpath", "-o", str(partial), "."],
            cwd=MODULE,
            check=True,
            env={**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-buildvcs=false"},
        )
        partial.replace(binary)
    return binary


if __name__ == "__main__":
    print(go_kuberesolver_client())
