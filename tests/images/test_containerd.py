"""The archives load into a real containerd under the names a pod spec gives them."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from testenv.images import BuiltImage, images_in_containerd, import_into_containerd
from testenv.wait import until

pytestmark = pytest.mark.timeout(1800)


@pytest.fixture
def containerd(tmp_path: Path) -> Iterator[str]:
    """A containerd of our own (its root, state and socket under tmp_path), no CRI plugin."""
    socket = tmp_path / "containerd.sock"
    config = tmp_path / "config.toml"
    config.write_text(
        "version = 2\n"
        f'root = "{tmp_path / "root"}"\n'
        f'state = "{tmp_path / "state"}"\n'
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
        f'[grpc]\n  address = "{socket}"\n'
    )
    log = (tmp_path / "containerd.log").open("wb")
    proc = subprocess.Popen(
        ["containerd", "--config", str(config)], stdout=log, stderr=subprocess.STDOUT
    )
    address = str(socket)

    def answering() -> bool:
        if proc.poll() is not None:
            raise AssertionError((tmp_path / "containerd.log").read_text())
        done = subprocess.run(["ctr", "--address", address, "version"], capture_output=True)
        return done.returncode == 0

    try:
        until(answering, timeout_s=60, interval_s=0.2, message="containerd answering", retry_on=())
        yield address
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        log.close()


def test_every_image_imports_under_its_ref(images: dict[str, BuiltImage], containerd: str) -> None:
    assert images_in_containerd(containerd) == []
    refs = import_into_containerd(images.values(), containerd)
    assert sorted(refs) == sorted(image.ref for image in images.values())
    assert sorted(images_in_containerd(containerd)) == sorted(refs)
