"""An asyncio event loop on a virtual clock: timers fire at once, in order, and time jumps.

``loop.time()`` starts at 0 and moves only when the loop would otherwise wait
for its next timer: it jumps straight there. A test of timing logic (a
coalescing window, a token bucket, a timeout) then runs in microseconds and
asserts exact times, free of the machine's load. File descriptors still
work: each turn polls them without blocking, and a loop with no timer at all
(waiting only for a thread or a socket) blocks for real.

    with virtual_clock_loop() as loop:
        loop.run_until_complete(main())
"""

from __future__ import annotations

import asyncio
import contextlib
import selectors
from collections.abc import Iterator
from typing import Any

__all__ = ["VirtualClockLoop", "virtual_clock_loop"]


class _JumpingSelector(selectors.DefaultSelector):
    """Polls without blocking; where the loop would sleep, moves its clock instead."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def select(self, timeout: float | None = None) -> list[tuple[Any, int]]:
        ready: list[tuple[Any, int]] = super().select(0)
        if ready or (timeout is not None and timeout <= 0):
            return ready
        if timeout is None:  # nothing scheduled: only I/O (a thread's wake-up) can come
            blocked: list[tuple[Any, int]] = super().select(None)
            return blocked
        self.now += timeout
        return []


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose :meth:`time` is virtual (see the module)."""

    def __init__(self) -> None:
        self._jumping = _JumpingSelector()
        super().__init__(self._jumping)

    def time(self) -> float:
        return self._jumping.now


@contextlib.contextmanager
def virtual_clock_loop() -> Iterator[VirtualClockLoop]:
    """A fresh :class:`VirtualClockLoop`, closed afterwards."""
    loop = VirtualClockLoop()
    try:
        yield loop
    finally:
        loop.close()
