"""Keeping the cyclic garbage collector off the operator's long-lived state.

The operator holds a large state that lives long and holds no reference
cycles: a view of every Service and EndpointSlice, and per target its
endpoints, their encoded text and its ConfigMap. Every full collection of
the cyclic garbage collector traverses all of it; at 100,000 endpoints that
was about a tenth of the CPU per change. :func:`settle` (``gc.freeze()``)
moves every object alive now to a generation that is never traversed; they
are still freed by reference counting when dropped. The runtime settles the
heap when such state was just built: after the first lists, and after the
first reconcile of each target known when this replica began to lead
(:class:`FirstRound`). What is built after that is collected as usual.

While the first lists are read the collector is off (:func:`quiet_heap`):
hundreds of thousands of objects that all survive are built, and each
collection in between would traverse all of them again; at scale those
pauses held up the Lease renewal. The price: a reference cycle that became
garbage meanwhile is frozen with the rest and never freed (a one-time few
objects; the views hold no cycles).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
from collections.abc import Hashable, Iterable, Iterator

__all__ = ["FirstRound", "quiet_heap", "settle"]

_log = logging.getLogger("kuberesolver.operator")


def settle(why: str) -> None:
    """Freeze every object alive now out of the collector's scans."""
    gc.freeze()
    _log.debug("heap settled after %s: %d objects frozen", why, gc.get_freeze_count())


@contextlib.contextmanager
def quiet_heap(longest_s: float) -> Iterator[None]:
    """The collector off for the block, or at most ``longest_s`` (back on at its end)."""
    was_on = gc.isenabled()
    gc.disable()
    timer = threading.Timer(longest_s, gc.enable) if was_on else None
    if timer is not None:
        timer.daemon = True
        timer.start()
    try:
        yield
    finally:
        if timer is not None:
            timer.cancel()
        if was_on:
            gc.enable()


class FirstRound:
    """Settles the heap once each of a set of targets has been reconciled once."""

    def __init__(self) -> None:
        self._waiting: set[Hashable] | None = None
        self.done = False

    def begin(self, keys: Iterable[Hashable]) -> None:
        """Wait for these (only the first time: a later lead changes nothing)."""
        if self._waiting is None:
            self._waiting = set(keys)
            self._check()

    def reconciled(self, key: Hashable) -> None:
        if self._waiting is not None and not self.done:
            self._waiting.discard(key)
            self._check()

    def _check(self) -> None:
        if self._waiting is not None and not self._waiting and not self.done:
            self.done = True
            settle("the first reconcile of every target")
