"""The heap is settled (gc.freeze) once, when every target of the first lead was reconciled."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from kuberesolver.operator.runtime.heap import FirstRound, quiet_heap
from testenv.wait import until


@pytest.fixture(autouse=True)
def _unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_settled_after_the_last_first_reconcile_only() -> None:
    round_ = FirstRound()
    round_.reconciled("a")  # before the lead: nothing
    round_.begin(["a", "b"])
    round_.reconciled("a")
    round_.reconciled("a")
    assert not round_.done
    assert gc.get_freeze_count() == 0
    round_.reconciled("b")
    assert round_.done
    assert gc.get_freeze_count() > 0
    gc.unfreeze()
    round_.begin(["c"])  # a later lead, and later reconciles: never again
    round_.reconciled("c")
    assert gc.get_freeze_count() == 0


def test_no_targets_settles_at_once() -> None:
    round_ = FirstRound()
    round_.begin([])
    assert round_.done
    assert gc.get_freeze_count() > 0


def test_quiet_heap_turns_the_collector_off_then_on() -> None:
    assert gc.isenabled()
    with quiet_heap(60):
        assert not gc.isenabled()
    assert gc.isenabled()
    # Never longer than asked, even if the block is.
    with quiet_heap(0.01):
        until(gc.isenabled, timeout_s=10, message="the collector back on")
    assert gc.isenabled()
