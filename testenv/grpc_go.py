"""grpc-go's own xDS client, built once from the module proxy into the testenv cache.

``testenv/gomod/grpc-go-xds`` is a plain grpc-go program that dials
``xds://`` targets (see its main.go); the binary is cached per grpc-go version
(read from its go.mod), as the other testenv builds are.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

__all__ = ["grpc_go_version", "xds_client"]

MODULE = Path(__file__).resolve().parent / "gomod" / "grpc-go-xds"


def grpc_go_version() -> str:
    """The google.golang.org/grpc version the module requires."""
    found = re.search(r"^require google\.golang\.org/grpc (v\S+)", (MODULE / "go.mod").read_text(),
                      re.MULTILINE)  # fmt: skip
    if found is None:
        raise RuntimeError(f"{MODULE}/go.mod requires no google.golang.org/grpc")
    return found.group(1)


def xds_client() -> Path:
    """The client binary; built when missing (about a minute warm, longer cold)."""
    cache = Path(
        os.environ.get("KUBERESOLVER_TESTENV_CACHE", Path.home() / ".cache/kuberesolver-testenv")
    )
    binary = cache / f"grpc-go-xds-{grpc_go_version()}" / "grpc-go-xds"
    if not binary.is_file():
        binary.parent.mkdir(parents=True, exist_ok=True)
        print(f"building {binary} (grpc-go {grpc_go_version()})", file=sys.stderr)
        partial = binary.with_name(".grpc-go-xds.partial")
        subprocess.run(
            ["nice", "-n", "10", "go", "build", "-trimpath", "-o", str(partial), "."],
            cwd=MODULE,
            check=True,
            env={**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-buildvcs=false"},
        )
        partial.replace(binary)
    return binary


if __name__ == "__main__":
    print(xds_client())
