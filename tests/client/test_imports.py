"""Importing the client pulls in none of the operator's dependencies."""

from __future__ import annotations

import subprocess
import sys

FORBIDDEN = ("kopf", "kubernetes", "jinja2", "kuberesolver.operator")


def test_client_import_is_lean() -> None:
    code = (
        "import sys, kuberesolver, kuberesolver.aio, kuberesolver.client.channel;"
        "import kuberesolver.client.sources.file;"
        "import kuberesolver.client.metrics, kuberesolver.projector;"
        f"bad = [m for m in sys.modules if m.split('.')[0] in {FORBIDDEN[:3]!r} "
        "or m.startswith('kuberesolver.operator')];"
        "print(','.join(sorted(bad)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "", f"the client imported: {out.stdout.strip()}"


def test_public_surface() -> None:
    import kuberesolver

    assert set(kuberesolver.__all__) >= {
        "insecure_channel",
        "secure_channel",
        "register_scheme",
        "parse_target",
        "Snapshot",
        "SnapshotError",
    }
    for name in kuberesolver.__all__:
        assert getattr(kuberesolver, name) is not None
