"""Go's sercand/kuberesolver v6 in a small client (bench/go/kuberesolver-client), built once.

The binary is static (``CGO_ENABLED=0``), built from the Go module proxy into
the testenv cache, keyed by a digest of the module's sources: a changed
``main.go`` or pin is built anew. bench/direct_latency.py runs it on the host;
testenv.images packs it into the ``go-kuberesolver`` image for the node benches.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from testenv.gobuild import cached_go_binary

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
    sources = hashlib.sha256()
    for name in SOURCES:
        sources.update(hashlib.sha256((MODULE / name).read_bytes()).digest())
    version = kuberesolver_version()
    return cached_go_binary(
        MODULE,
        f"go-kuberesolver-{version}-{sources.hexdigest()[:16]}",
        "kuberesolver-client",
        f"Go's kuberesolver {version}",
    )


if __name__ == "__main__":
    print(go_kuberesolver_client())
