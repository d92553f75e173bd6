"""Giving memory back to the system after a large snapshot was replaced by a small one.

Freed Python objects and grpc's freed buffers stay in the C allocator's heap
until it is trimmed: with glibc, ``malloc_trim(0)`` returns the free pages.
Elsewhere (musl, macOS) only the garbage collection runs.
"""

from __future__ import annotations

import ctypes
import gc
import logging
from collections.abc import Callable
from typing import Final

__all__ = ["SHRINK_THRESHOLD", "give_back", "given_back"]

log = logging.getLogger("kuberesolver")

SHRINK_THRESHOLD: Final = 10_000
"""How far the endpoints must fall below their peak before memory is given back (a few ms)."""


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):  # not glibc
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_TRIM: Final = _malloc_trim()

given_back = 0
"""How many times memory was given back (for benchmarks and tests)."""


def give_back() -> None:
    """Collect garbage, then return the allocator's free pages to the system (glibc)."""
    global given_back
    gc.collect()
    if _TRIM is not None:
        _TRIM(0)
    given_back += 1
