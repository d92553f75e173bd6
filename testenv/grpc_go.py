"""grpc-go's own xDS client, built once from the module proxy into the testenv cache.

``testenv/gomod/grpc-go-xds`` is a plain grpc-go program that dials
``xds://`` targets (see its main.go); the binary is cached per grpc-go version
(read from its go.mod), as the other testenv builds are.
"""

from __future__ import annotations

import re
from pathlib import Path

from testenv.gobuild import cached_go_binary

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
    version = grpc_go_version()
    return cached_go_binary(MODULE, f"grpc-go-xds-{version}", "grpc-go-xds", f"grpc-go {version}")


if __name__ == "__main__":
    print(xds_client())
