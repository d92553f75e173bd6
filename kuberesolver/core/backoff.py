"""The one retry backoff of the operator and the projector: exponential, capped."""

from __future__ import annotations

from typing import Final

__all__ = ["BACKOFF_CAP_S", "BACKOFF_FIRST_S", "backoff_s"]

BACKOFF_FIRST_S: Final = 0.5
BACKOFF_CAP_S: Final = 30.0


def backoff_s(failures: int) -> float:
    """Seconds to wait after ``failures`` failures in a row: 1 s, 2 s, 4 s ... up to 30 s.

    >>> [backoff_s(n) for n in (1, 2, 3, 6, 20)]
    [1.0, 2.0, 4.0, 30.0, 30.0]
    """
    return min(BACKOFF_CAP_S, BACKOFF_FIRST_S * float(2 ** min(max(failures, 0), 6)))
