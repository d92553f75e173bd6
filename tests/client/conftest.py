"""Fixtures for the client tests: real backends on 127.0.0.x and a snapshot root."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kuberesolver.client.channel import registry
from tests.client._support import Backend
from tests.factories import stopped_after


@pytest.fixture
def backends() -> Iterator[Callable[..., Backend]]:
    """A factory of real grpc servers (host 127.0.0.1 unless given); all are stopped after."""
    yield from stopped_after(_backend, Backend.stop)


def _backend(host: str = "127.0.0.1", name: str | None = None, **kw: Any) -> Backend:
    return Backend(host, name, **kw)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A snapshot root; the target greeter.ns lives in ``root / "greeter.ns"``."""
    return tmp_path


@pytest.fixture
def snapdir(root: Path) -> Path:
    return root / "greeter.ns"


@pytest.fixture(autouse=True)
def _no_leaked_watches() -> Iterator[None]:
    """Every test closes its channels: nothing stays watched afterwards."""
    yield
    leaked = registry().watched()
    assert not leaked, f"channels left open, still watching {leaked}"
