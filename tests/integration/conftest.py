"""These tests run on the real control plane, in the suite's private network (tests/cluster.py)."""

import pytest

from tests import cluster


def pytest_configure(config: pytest.Config) -> None:
    cluster.configure(config)
