"""Container images for the tests and for release, built locally with buildah: no registry.

- ``ensure_images()``: every image (``operator`` and ``projector`` from the
  repository's Dockerfile; ``backend`` and ``client``, the test images), built
  when missing, as OCI archives cached by a digest of their inputs;
- ``import_into_containerd(images.values(), address)``: loads them into a
  containerd for kubelet;
- ``python -m testenv.images`` prints them; ``... wheelhouse [--python X.Y]``
  only fills ./wheelhouse (for ``docker build`` on another Python).

Needs root, buildah and mmdebstrap (installed by .ci/run).
"""

from __future__ import annotations

from testenv.images.build import IMAGES, BuiltImage, ensure_images, ensure_in_storage
from testenv.images.containerd import images_in_containerd, import_into_containerd

__all__ = [
    "IMAGES",
    "BuiltImage",
    "ensure_images",
    "ensure_in_storage",
    "images_in_containerd",
    "import_into_containerd",
]
