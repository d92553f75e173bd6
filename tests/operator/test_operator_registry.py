"""What the operator registers with kopf, read from its source: read-only handlers, named
resource-then-event, and no kopf internals anywhere.

Only kopf's public decorators are looked at (kopf's registry has no public listing):
every ``@kopf...`` decorator in ``kuberesolver/operator/`` is parsed from the source.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import kuberesolver.operator
from kuberesolver.operator import handlers

PACKAGE = Path(kuberesolver.operator.__file__).parent
# kopf's handlers that never write on the objects they watch and add no finalizer.
READ_ONLY = {"on.startup": "startup", "on.cleanup": "cleanup", "on.probe": "probe",
             "index": "index", "on.event": "event"}  # fmt: skip
RESOURCES = {"services": "service", "endpointslices": "endpointslice", "PLURAL": "grpctarget"}


def _kopf_decorators(tree: ast.AST) -> list[tuple[str, str, ast.Call | None]]:
    """``(function name, decorator kind, call)`` for every ``@kopf.<kind>`` decorator."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.AsyncFunctionDef | ast.FunctionDef):
            continue
        for dec in node.decorator_list:
            call = dec if isinstance(dec, ast.Call) else None
            target = call.func if call is not None else dec
            text = ast.unparse(target)
            if text.startswith("kopf."):
                found.append((node.name, text.removeprefix("kopf."), call))
    return found


def _resource(call: ast.Call | None) -> str:
    """The plural of the resource a decorator names (its third positional argument)."""
    if call is None or len(call.args) < 3:
        return "operator"
    arg = call.args[2]
    return arg.value if isinstance(arg, ast.Constant) else ast.unparse(arg)


def test_only_read_only_handlers_and_each_named_resource_then_event() -> None:
    registered: dict[str, str] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for name, kind, call in _kopf_decorators(ast.parse(path.read_text(), str(path))):
            assert kind in READ_ONLY, f"{path.name}: {name} uses kopf.{kind} (writes or finalizes)"
            resource = _resource(call)
            prefix = RESOURCES.get(resource, "operator" if kind.startswith("on.") else resource)
            if kind == "on.probe":
                prefix = name.split("_")[0]  # a probe is named after what it reports
            assert name == f"{prefix}_{READ_ONLY[kind]}", (
                f"{name}: expected {prefix}_{READ_ONLY[kind]}"
            )
            registered[name] = kind
    assert set(registered) == set(handlers.__all__)
    assert {k for k in registered.values()} >= {"on.event", "on.startup", "on.cleanup"}


def test_foreign_resources_are_not_kopfs() -> None:
    """Services and EndpointSlices are watched by the operator's own reflectors
    (runtime/informer.py), which only list and watch: kopf's per-object machinery costs
    minutes at 100,000 endpoints."""
    for path in sorted(PACKAGE.rglob("*.py")):
        for name, _, call in _kopf_decorators(ast.parse(path.read_text(), str(path))):
            assert _resource(call) not in ("services", "endpointslices"), f"{path.name}: {name}"


def test_no_private_names_of_kopf() -> None:
    pattern = re.compile(r"\bkopf\._|_spawning|from kopf\._|kopf import _")
    root = PACKAGE.parent
    offenders = [
        f"{p.relative_to(root)}:{i}"
        for p in sorted(root.rglob("*.py"))
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert offenders == []
