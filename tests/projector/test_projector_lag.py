"""The projector's lag: each version is applied ``lag_s`` after it was seen, in order."""

from __future__ import annotations

import threading
import time

import pytest

from kuberesolver.projector.lag import Lagged


def test_each_version_waits_its_lag_and_order_is_kept() -> None:
    applied: list[tuple[str, float]] = []
    done = threading.Event()

    def apply(item: str) -> None:
        applied.append((item, time.monotonic()))
        if len(applied) == 3:
            done.set()

    lagged: Lagged[str] = Lagged(apply, lag_s=0.3)
    seen = {}
    for item in ("v1", "v2", "v3"):
        seen[item] = time.monotonic()
        lagged.submit(item)
        time.sleep(0.05)
    assert done.wait(10), applied
    lagged.stop()
    assert [item for item, _ in applied] == ["v1", "v2", "v3"]
    for item, at in applied:
        assert at - seen[item] >= 0.3, f"{item} applied {at - seen[item]:.3f} s after it was seen"


def test_stop_drops_pending_versions_and_is_idempotent() -> None:
    applied: list[str] = []
    lagged: Lagged[str] = Lagged(applied.append, lag_s=30)
    lagged.submit("v1")
    assert lagged.pending == 1
    lagged.stop()
    lagged.stop()
    assert lagged.pending == 0
    assert applied == []


def test_negative_lag_is_refused() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        Lagged(print, lag_s=-1)
