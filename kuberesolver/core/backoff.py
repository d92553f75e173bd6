"""The one retry backoff: exponential, capped, with full jitter.

Every wait before a retry uses it (the reflector, the hub, the status writer,
the xDS feed, direct mode). Full jitter (a uniform draw between 0 and the
exponential ceiling) spreads clients that failed together: after an API
server restart, the projectors of every Pod do not retry in step.
"""

from __future__ import annotations

import random
from typing import Final

__all__ = ["BACKOFF_CAP_S", "BACKOFF_FIRST_S", "Backoff", "backoff_ceiling_s", "backoff_s"]

BACKOFF_FIRST_S: Final = 0.5
BACKOFF_CAP_S: Final = 30.0

_rng = random.Random()


def backoff_ceiling_s(
    failures: int, first_s: float = BACKOFF_FIRST_S, cap_s: float = BACKOFF_CAP_S
) -> float:
    """The most to wait after ``failures`` failures in a row: 1 s, 2 s, 4 s ... up to ``cap_s``.

    >>> [backoff_ceiling_s(n) for n in (1, 2, 3, 6, 20)]
    [1.0, 2.0, 4.0, 30.0, 30.0]
    """
    return min(cap_s, first_s * float(2 ** min(max(failures, 0), 30)))


def backoff_s(failures: int, rng: random.Random | None = None) -> float:
    """Seconds to wait after ``failures`` failures in a row: uniform in [0, ceiling]."""
    return (rng or _rng).uniform(0.0, backoff_ceiling_s(failures))


class Backoff:
    """A failure counter with :func:`backoff_s`'s policy; :meth:`reset` after a success."""

    def __init__(
        self,
        first_s: float = BACKOFF_FIRST_S,
        cap_s: float = BACKOFF_CAP_S,
        rng: random.Random | None = None,
    ) -> None:
        if first_s <= 0 or cap_s < first_s:
            raise ValueError(f"backoff needs 0 < first_s <= cap_s, got {first_s} and {cap_s}")
        self.first_s = first_s
        self.cap_s = cap_s
        self.failures = 0
        self._rng = rng or _rng

    def next_s(self) -> float:
        """Count a failure; the pause before the next try, in seconds."""
        self.failures += 1
        return self._rng.uniform(0.0, backoff_ceiling_s(self.failures, self.first_s, self.cap_s))

    def reset(self) -> None:
        self.failures = 0
