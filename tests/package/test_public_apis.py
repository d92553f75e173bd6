"""kuberesolver uses only the public APIs of grpc, kopf and watchfiles (scanned with ast)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "kuberesolver"
WATCHED = ("grpc", "kopf", "watchfiles")


def private_uses(source: str) -> list[str]:
    """Private names of ``WATCHED`` packages that ``source`` imports or reaches by attribute."""
    found: list[str] = []
    tree = ast.parse(source)
    aliases: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] in WATCHED:
                    aliases.add(alias.asname or parts[0])
                    if any(p.startswith("_") for p in parts[1:]):
                        found.append(f"line {node.lineno}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] not in WATCHED:
                continue
            if any(p.startswith("_") for p in parts[1:]):
                found.append(f"line {node.lineno}: from {node.module} import ...")
            for alias in node.names:
                if alias.name.startswith("_"):
                    found.append(f"line {node.lineno}: from {node.module} import {alias.name}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            base = node.value
            while isinstance(base, ast.Attribute | ast.Call):
                base = base.value if isinstance(base, ast.Attribute) else base.func
            if isinstance(base, ast.Name) and base.id in aliases and node.attr[:2] != "__":
                found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "_proto" not in p.parts)


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_no_private_names_of_dependencies(path: Path) -> None:
    assert private_uses(path.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize(
    "source",
    [
        "from grpc import _channel",
        "from grpc._cython import cygrpc",
        "import grpc.aio._channel",
        "from kopf._core.engines import peering",
        "from watchfiles._rust_notify import RustNotify",
        "import grpc\nx = grpc._channel.Channel",
        "import kopf\nkopf._core",
        "import kopf\nkopf.get_default_registry()._spawning",
    ],
)
def test_the_scan_sees_private_names(source: str) -> None:
    assert private_uses(source)


def test_the_scan_allows_public_names() -> None:
    assert private_uses("import grpc\nimport grpc.aio\nfrom grpc import aio\ngrpc.Channel") == []
