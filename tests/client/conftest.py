"""Fixtures for the client tests: real backends on 127.0.0.x and a snapshot root."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kuberesolver.client.channel import registry
from tests.client._support import Backend


@pytest.fixture
def backends() -> Iterator[Callable[..., Backend]]:
    """A factory of real grpc servers; all are stopped after the test."""
    started: list[Backend] = []

    def make(host: str = "127.0.0.1", name: str | None = None, **kw: object) -> Backend:
        b = Backend(host, name, **kw)  # type: ignore[arg-type]
        started.append(b)
        return b

    yield make
    for b in started:
        b.stop()


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
