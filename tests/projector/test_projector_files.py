"""The projector's mapping of a ConfigMap to files (pure)."""

from __future__ import annotations

from kuberesolver.projector.configmap_watch import files_of


def test_data_and_binary_data() -> None:
    cm = {"data": {"endpoints.json": "{}\n", "ü.txt": "ä"}, "binaryData": {"blob": "AAEC"}}
    assert files_of(cm) == {
        "endpoints.json": b"{}\n",
        "ü.txt": "ä".encode(),
        "blob": b"\x00\x01\x02",
    }


def test_empty_configmap() -> None:
    assert files_of({}) == {}
    assert files_of({"data": None, "binaryData": None}) == {}
