"""Giving memory back to the system after a large snapshot was replaced by a small one.

Two things keep freed memory resident, and both are handled here (glibc only;
elsewhere, musl or macOS, only the garbage collection runs):

- Freed Python objects and grpc's freed buffers stay in the C allocator's
  heaps until they are trimmed: :func:`give_back` collects garbage and calls
  ``malloc_trim(0)``, which returns the free pages inside every heap; after a
  shrink it runs a few times over 15 s (:func:`give_back_after_shrink`), as
  grpc frees the old endpoints' subchannels only seconds later.
- ``malloc_trim`` never shrinks the top of the heaps that glibc gives each
  thread (grpc parses and builds the endpoints on its own threads), and glibc
  lets that top grow: once a large block (a snapshot file of many MB) is
  freed, it raises its trim threshold to twice that block, up to 64 MiB, for
  the rest of the process. Measured with 100,000 endpoints then 2: 60% of the
  growth returned with the threshold left to glibc, 99% with it fixed. So
  the first time a channel holds :data:`SHRINK_THRESHOLD` endpoints,
  :func:`fix_trim_threshold` sets ``M_TRIM_THRESHOLD`` to glibc's own default
  (128 KiB), which also stops glibc from raising it; not if the environment
  sets the threshold (``MALLOC_TRIM_THRESHOLD_`` or ``glibc.malloc.trim_threshold``
  in ``GLIBC_TUNABLES``), whose choice stays.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import threading
import time
from typing import Any, Final

__all__ = [
    "GIVE_BACK_AFTER_S",
    "SHRINK_THRESHOLD",
    "fix_trim_threshold",
    "give_back",
    "give_back_after_shrink",
    "given_back",
    "should_give_back",
]

log = logging.getLogger("kuberesolver")

SHRINK_THRESHOLD: Final = 1000
"""Memory is given back when the endpoints fall at least this many below their peak, and
to at most half of it (each time costs a garbage collection and a trim: a few ms)."""
M_TRIM_THRESHOLD: Final = -1
"""``mallopt``'s parameter number (glibc's malloc.h)."""
TRIM_THRESHOLD_BYTES: Final = 128 * 1024
"""glibc's default trim threshold, before it raises it."""
GIVE_BACK_AFTER_S: Final = (0.0, 1.0, 3.0, 7.0, 15.0)
"""When memory is given back, counted from grpc's acceptance of the small snapshot: grpc
tears the old endpoints' subchannels down on its own threads after that (10,000 ready
endpoints: 2-3 s later, measured), so one trim at once would find most still held."""


def _libc() -> Any:
    try:
        libc = ctypes.CDLL(None)
        trim, mallopt = libc.malloc_trim, libc.mallopt
    except (AttributeError, OSError):  # not glibc
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return libc


_LIBC: Final = _libc()
_lock = threading.Lock()
_threshold_fixed = False

given_back = 0
"""How many times memory was given back, each pass counted (for benchmarks and tests)."""


def should_give_back(peak: int, held: int) -> bool:
    """Whether grpc's endpoints fell far enough below their peak to give memory back.

    >>> should_give_back(10_000, 2), should_give_back(100_000, 95_000), should_give_back(900, 2)
    (True, False, False)
    """
    return peak - held >= SHRINK_THRESHOLD and held <= peak // 2


def fix_trim_threshold(environ: dict[str, str] | None = None) -> bool:
    """Fix glibc's trim threshold at its default, once per process (see the module
    docstring); whether it was set now."""
    global _threshold_fixed
    env = os.environ if environ is None else environ
    with _lock:
        if _threshold_fixed or _LIBC is None:
            return False
        _threshold_fixed = True
        if "MALLOC_TRIM_THRESHOLD_" in env or "glibc.malloc.trim_threshold" in env.get(
            "GLIBC_TUNABLES", ""
        ):
            return False
        if _LIBC.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) != 1:
            return False
    log.info(
        "a large snapshot: glibc's malloc trim threshold fixed at %d KiB, so that memory "
        "can be given back after it (MALLOC_TRIM_THRESHOLD_ chooses another)",
        TRIM_THRESHOLD_BYTES // 1024,
    )
    return True


def give_back() -> None:
    """Collect garbage, then return the allocator's free pages to the system (glibc)."""
    global given_back
    gc.collect()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
    given_back += 1


def give_back_after_shrink() -> None:
    """:func:`give_back` at each of :data:`GIVE_BACK_AFTER_S` (run it on a thread of its own)."""
    start = time.monotonic()
    for delay in GIVE_BACK_AFTER_S:
        pause = start + delay - time.monotonic()
        if pause > 0:
            time.sleep(pause)  # the schedule above, not a wait for a condition
        give_back()
