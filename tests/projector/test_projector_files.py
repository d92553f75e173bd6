"""The projector's mapping of a ConfigMap to files (pure)."""

from __future__ import annotations

from pathlib import Path

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


def test_check_says_whether_the_directory_holds_a_projection_yet(tmp_path: Path) -> None:
    """The injected sidecar's startup probe: status 1 until the first projection, then 0."""
    from kuberesolver.core.atomic_writer import write_atomic
    from kuberesolver.projector.__main__ import main

    target = tmp_path / "greeter.app"
    argv = ["--configmap=greeter", f"--dir={target}", "--check"]
    assert main(argv) == 1
    target.mkdir()
    assert main(argv) == 1  # an empty emptyDir
    write_atomic(target, {"endpoints.json": b"{}"})
    assert main(argv) == 0
