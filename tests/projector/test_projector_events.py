"""The projector survives any watch event: a bad one is logged once, counted and skipped.

Real files in kubelet's atomic layout; the Kubernetes client is built but never
called (``handle`` only writes files).
"""

from __future__ import annotations

import base64
import logging
from pathlib import Path
from typing import Any

import pytest

from kuberesolver.core.atomic_writer import read_dir
from kuberesolver.kube.credentials import ApiConfig
from kuberesolver.kube.http import HttpApi
from kuberesolver.projector.configmap_watch import ConfigMapProjector, configmap_transport


def _event(kind: str, **configmap: Any) -> dict[str, Any]:
    return {"type": kind, "object": {"metadata": {"name": "cm"}, **configmap}}


HOSTILE: dict[str, Any] = {
    "binaryData not base64": _event("MODIFIED", binaryData={"k": "not base64!"}),
    "data not an object": _event("MODIFIED", data=["a", "b"]),
    "a key escaping the directory": _event("MODIFIED", data={"../escape": "x"}),
    "a reserved key": _event("MODIFIED", data={"..data": "x"}),
}
"""What only a ConfigMap's projection can get wrong; what any watch can send (an object that is
not one, an event without a type) is the shared reflector's, tested in tests/kube."""


@pytest.fixture
def projector(tmp_path: Path) -> ConfigMapProjector:
    """A projector fed events by hand: its API client is never asked for anything."""
    api = HttpApi(ApiConfig(server="https://127.0.0.1:1"))
    return ConfigMapProjector(configmap_transport(api, "ns", "cm"), tmp_path / "out")


@pytest.mark.parametrize("event", list(HOSTILE.values()), ids=list(HOSTILE))
def test_a_bad_event_is_skipped_and_the_next_good_one_is_written(
    projector: ConfigMapProjector, caplog: pytest.LogCaptureFixture, event: dict[str, Any]
) -> None:
    caplog.set_level(logging.ERROR, logger="kuberesolver.projector")
    projector.handle(_event("ADDED", data={"endpoints.json": "1"}))
    projector.handle(event)
    projector.handle(event)  # the same problem again: counted, not logged again
    assert read_dir(projector.directory) == {"endpoints.json": b"1"}
    assert projector.errors == 2
    assert len([r for r in caplog.records if "skipping" in r.getMessage()]) == 1
    assert "Traceback" in caplog.text
    encoded = base64.b64encode(b"\x00\x01").decode()
    projector.handle(_event("MODIFIED", data={"endpoints.json": "2"}, binaryData={"b": encoded}))
    assert read_dir(projector.directory) == {"endpoints.json": b"2", "b": b"\x00\x01"}
    assert not (projector.directory.parent / "escape").exists()
