"""The docs run as tests: README.md's Python blocks and the examples in module docstrings.

See tests/docs.py for what is collected; examples that need the control plane
run in tests/integration/test_docs.py.
"""

from __future__ import annotations

import json
import re
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2_grpc

import kuberesolver.client.target
import kuberesolver.core.snapshot
from kuberesolver.core.atomic_writer import write_atomic
from kuberesolver.core.snapshot import ENDPOINTS_KEY, Endpoint, Snapshot, TargetRef, encode
from tests import docs


def test_every_readme_block_has_a_world_that_runs_it() -> None:
    blocks = docs.readme_blocks()
    assert blocks, "README.md has no ```python block"
    assert {b.world for b in blocks} <= set(docs.WORLDS), [(b.line, b.world) for b in blocks]
    # A fence that the pattern misses (a typo such as ```Python) would go untested.
    assert len(blocks) == docs.README.read_text().count("```python\n")


@pytest.mark.parametrize("block", docs.readme_blocks("greeter"), ids=lambda b: f"line{b.line}")
def test_readme_block_runs(
    block: docs.Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each block calls the health service of target greeter.backend and prints the answer."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.7:0")
    server.start()
    try:
        # The mounted ConfigMap of target greeter.backend, as kubelet lays it out.
        snapshot = Snapshot(
            target=TargetRef("greeter", "backend", "grpc", "grpc", 8080),
            revision=1,
            endpoints=(Endpoint("127.0.0.7", port, pod="greeter-0"),),
        )
        write_atomic(tmp_path / "greeter.backend", {ENDPOINTS_KEY: encode(snapshot).encode()})
        monkeypatch.setenv("KUBERESOLVER_DIR", str(tmp_path))
        assert "SERVING" in block.run()
    finally:
        server.stop(None)


def test_docstring_examples_are_found() -> None:
    found = docs.modules_with_examples()
    assert "testenv.wait" in found
    assert set(found) >= docs.CLUSTER_MODULES, "a cluster module lost its examples"


@pytest.mark.parametrize(
    "module", [m for m in docs.modules_with_examples() if m not in docs.CLUSTER_MODULES]
)
def test_docstring_examples_run(module: str) -> None:
    failed, attempted = docs.run_doctests(module)
    assert attempted > 0, f"{module} has '>>> ' but doctest found no example"
    assert failed == 0, f"{failed} of {attempted} examples failed in {module} (report above)"


def _literal_block(doc: str, after: str) -> str:
    """The indented block that follows the line ending with ``after``."""
    tail = doc.split(after, 1)[1]
    return "\n".join(
        line[4:] for line in re.split(r"\n(?=\S)", tail.lstrip("\n"), maxsplit=1)[0].splitlines()
    )


def test_the_snapshot_format_in_the_docstring_decodes() -> None:
    """kuberesolver/core/snapshot.py documents the JSON document: the client must take it."""
    text = _literal_block(kuberesolver.core.snapshot.__doc__ or "", "(format version 1)::")
    snap = kuberesolver.core.snapshot.decode(text)
    assert snap.version == kuberesolver.core.snapshot.FORMAT_VERSION
    assert json.loads(kuberesolver.core.snapshot.encode(snap)) == json.loads(text)


def test_the_target_forms_in_the_docstring_parse() -> None:
    """kuberesolver/client/target.py lists the accepted target forms: each one parses."""
    forms = _literal_block(
        kuberesolver.client.target.__doc__ or "", "snapshot was made for)::"
    ).split()
    assert forms
    for form in forms:
        assert form.startswith("kubernetes:"), form
        parsed = kuberesolver.client.target.parse_target(form)
        assert parsed.service == "svc", form


def test_one_version_for_package_chart_and_changelog() -> None:
    """The versioning policy in CHANGELOG.md: one version, and its newest entry carries it."""
    import yaml

    from kuberesolver import __version__

    chart = yaml.safe_load((docs.ROOT / "charts/kuberesolver/Chart.yaml").read_text())
    assert chart["version"] == chart["appVersion"] == __version__
    releases = re.findall(r"^## \[(\d[^\]]*)\]", (docs.ROOT / "CHANGELOG.md").read_text(), re.M)
    assert releases[:1] == [__version__], releases
    readme = (docs.ROOT / "README.md").read_text()
    assert f"**Status: {__version__}, a pre-release.**" in readme
    assert f"dist/kuberesolver-{__version__}.tgz" in readme
