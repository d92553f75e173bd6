"""Load built images into a containerd, for kubelet (pods use ``imagePullPolicy: Never``)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable

from testenv.images.build import BuiltImage

NAMESPACE = "k8s.io"
"""The containerd namespace the CRI plugin (so kubelet) reads images from."""


def import_into_containerd(
    images: Iterable[BuiltImage], address: str, namespace: str = NAMESPACE
) -> list[str]:
    """``ctr images import`` each image's archive into the containerd at ``address`` (its
    socket); return the references it now holds, as a pod spec names them."""
    refs = []
    for image in images:
        subprocess.run(
            ["ctr", "--address", address, "--namespace", namespace, "images", "import",
             str(image.archive)],
            check=True,
            capture_output=True,
        )  # fmt: skip
        refs.append(image.ref)
    return refs


def images_in_containerd(address: str, namespace: str = NAMESPACE) -> list[str]:
    """The references the containerd at ``address`` holds."""
    out = subprocess.run(
        ["ctr", "--address", address, "--namespace", namespace, "images", "list", "--quiet"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return out.split()
