"""Apply each version only ``lag_s`` seconds after it appeared, in order (kubelet's refresh lag).

Kubelet refreshes a mounted ConfigMap every 60-90 s. :class:`Lagged` stands in
for that delay in tests and benchmarks: every version handed to :meth:`submit`
is applied by one worker thread once ``lag_s`` seconds have passed since it was
seen, oldest first. :meth:`stop` drops what is still pending.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["Lagged"]

T = TypeVar("T")

_log = logging.getLogger("kuberesolver.projector")


class Lagged(Generic[T]):
    """Calls ``apply(item)`` ``lag_s`` seconds after ``submit(item)``, in submission order."""

    def __init__(
        self,
        apply: Callable[[T], None],
        lag_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if lag_s < 0:
            raise ValueError(f"lag_s={lag_s} must not be negative")
        self.lag_s = lag_s
        self._apply = apply
        self._clock = clock
        self._pending: collections.deque[tuple[float, T]] = collections.deque()
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="projector-lag", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._pending)

    def submit(self, item: T) -> None:
        with self._cond:
            self._pending.append((self._clock() + self.lag_s, item))
            self._cond.notify()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the worker; pending versions are dropped. Idempotent."""
        with self._cond:
            self._stopped = True
            self._pending.clear()
            self._cond.notify()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (
                    not self._pending or self._pending[0][0] > self._clock()
                ):
                    wait = self._pending[0][0] - self._clock() if self._pending else None
                    self._cond.wait(wait)
                if self._stopped:
                    return
                _, item = self._pending.popleft()
            try:
                self._apply(item)
            except Exception:  # one bad version must not stop the later ones
                _log.exception("applying a delayed version failed; the last files stay")
