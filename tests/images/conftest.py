"""The images, built once (or found in the cache), run with buildah in the suite's private network.

Building them cold takes minutes (`make images` does it ahead); warm, finding
them takes seconds. Nothing here needs the control plane.
"""

from __future__ import annotations

import pytest

from testenv.images import BuiltImage, ensure_images, ensure_in_storage
from testenv.netns import enter_private_network


def pytest_configure(config: pytest.Config) -> None:
    enter_private_network()  # the backends' ports exist only in the suite's namespace


@pytest.fixture(scope="session")
def images() -> dict[str, BuiltImage]:
    built = ensure_images()
    for image in built.values():
        ensure_in_storage(image)
    return built
