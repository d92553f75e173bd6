"""Importing the bottom layer, the operator or the projector loads no client machinery.

Each import runs in a fresh interpreter: ``sys.modules`` afterwards must hold
no grpc, no Envoy/xDS protos and no watchfiles.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("grpc", "envoy", "xds", "udpa", "validate", "google.protobuf", "watchfiles")


def loaded_after(module: str) -> list[str]:
    code = (
        f"import json, sys, {module}; "
        f"print(json.dumps(sorted(m for m in sys.modules if m.startswith({HEAVY!r}))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    found: list[str] = json.loads(out.stdout.strip().splitlines()[-1])
    return [m for m in found if m.split(".")[0] in HEAVY or m.startswith(HEAVY)]


@pytest.mark.parametrize(
    "module",
    [
        "kuberesolver",
        "kuberesolver.core",
        "kuberesolver.core.snapshot",
        "kuberesolver.core.policies",
        "kuberesolver.core.names",
        "kuberesolver.client.settings",
        "kuberesolver.client.target",
        "kuberesolver.kube.client",
        "kuberesolver.operator",
        "kuberesolver.projector",
        "kuberesolver.xds",
        "kuberesolver.xds.bootstrap",
        "kuberesolver.xds.settings",
        "kuberesolver.xds.auth",
    ],
)
def test_import_is_light(module: str) -> None:
    assert loaded_after(module) == []


def test_the_check_sees_heavy_imports() -> None:
    assert "grpc" in loaded_after("kuberesolver.client.channel")


def test_lazy_names_resolve() -> None:
    import kuberesolver

    for name in kuberesolver.__all__:
        assert getattr(kuberesolver, name) is not None
    assert "Channel" in dir(kuberesolver)
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = kuberesolver.no_such_name  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "path", ["direct.register", "aio.insecure_channel", "server.DrainableServer"]
)
def test_submodules_are_reached_from_the_bare_package(path: str) -> None:
    """``import kuberesolver`` then ``kuberesolver.aio.insecure_channel``: lazy, yet there."""
    module, attr = path.split(".")
    code = f"import kuberesolver; assert callable(kuberesolver.{module}.{attr})"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_an_unknown_name_is_still_an_attribute_error() -> None:
    import kuberesolver

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = kuberesolver.nope  # type: ignore[attr-defined]
