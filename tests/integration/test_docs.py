"""The docs' examples that need the real control plane (see tests/docs.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from testenv import ControlPlane
from tests import docs

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("module", sorted(docs.CLUSTER_MODULES))
def test_docstring_examples_run_on_the_control_plane(module: str) -> None:
    failed, attempted = docs.run_doctests(module)
    assert attempted > 0, f"{module} has no example"
    assert failed == 0, f"{failed} of {attempted} examples failed in {module} (report above)"


def test_readme_cluster_blocks_run(
    control_plane: ControlPlane, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Blocks marked ``<!-- test: cluster -->`` run with KUBECONFIG set to an admin's."""
    monkeypatch.setenv("KUBECONFIG", str(control_plane.admin_kubeconfig))
    monkeypatch.chdir(tmp_path)
    blocks = docs.readme_blocks("cluster")
    assert blocks, "no README block is marked <!-- test: cluster -->: drop this test with the last"
    for block in blocks:
        block.run()
