"""The CRD documents itself: ``kubectl explain`` describes every field of GrpcTarget."""

from __future__ import annotations

import re

import pytest

from testenv import ControlPlane
from testenv.tools import UserShell
from testenv.wait import until

pytestmark = pytest.mark.integration

UNDOCUMENTED = ("<no description>", "<empty>")


def field_paths(recursive: str) -> list[str]:
    """Dotted paths of every field in ``kubectl explain --recursive`` output, in order."""
    paths: list[str] = []
    stack: list[str] = []
    in_fields = False
    for line in recursive.splitlines():
        if line.startswith("FIELDS:"):
            in_fields = True
            continue
        match = re.match(r"^( +)(\S+)\t<", line)
        if not in_fields or not match:
            continue
        depth = len(match.group(1)) // 2 - 1
        del stack[depth:]
        stack.append(match.group(2))
        paths.append(".".join(stack))
    return paths


@pytest.fixture(scope="module")
def admin_shell(control_plane: ControlPlane, installed: list[str]) -> UserShell:
    """kubectl, once the apiserver publishes the CRD's schema (a moment after Established)."""
    shell = UserShell(control_plane.admin_kubeconfig)
    until(
        lambda: (
            shell.run("rm -rf ~/.kube/cache; kubectl explain grpctarget", check=False).returncode
            == 0
        ),
        timeout_s=60,
        message="kubectl explain grpctarget",
    )
    return shell


def test_every_field_has_a_description(admin_shell: UserShell) -> None:
    recursive = admin_shell.run("kubectl explain grpctarget --recursive").stdout
    paths = [p for p in field_paths(recursive) if not p.startswith("metadata.")]
    assert {"spec", "spec.port", "status", "status.conditions", "status.conditions.type"} <= set(
        paths
    ), recursive
    for path in ["", *paths]:
        text = admin_shell.run(f"kubectl explain grpctarget{'.' + path if path else ''}").stdout
        description = text.split("DESCRIPTION:", 1)[1].split("FIELDS:", 1)[0]
        assert description.strip(), f"{path}: no description\n{text}"
        for word in UNDOCUMENTED:
            assert word not in text, f"{path}: {word}\n{text}"


def test_port_reads_int_or_string(admin_shell: UserShell) -> None:
    text = admin_shell.run("kubectl explain grpctarget.spec.port").stdout
    assert "FIELD: port <" in text, text
    description = text.split("DESCRIPTION:", 1)[1].strip()
    assert description.startswith("int or string: "), text


def test_status_explains_each_condition_type(admin_shell: UserShell) -> None:
    text = admin_shell.run("kubectl explain grpctarget.status").stdout
    for word in ("observedGeneration", "readyEndpoints", "totalEndpoints", "revision",
                 "configMapName", "lastUpdateTime", "conditions",
                 "Ready", "ServiceFound", "Rendered", "Published"):  # fmt: skip
        assert word in text, (word, text)


def test_field_paths_parses_nesting() -> None:
    sample = "KIND: X\nFIELDS:\n  spec\t<Object>\n    port\t<IntOrString>\n  status\t<Object>\n"
    assert field_paths(sample) == ["spec", "spec.port", "status"]
