"""The one way tests, the demo and the benchmarks wait for a condition: poll it.

``until(fn, timeout_s=..., message=...)`` calls ``fn`` every ``interval_s``
(0.05 by default) until it returns a truthy value, and returns that value. An
exception of a type in ``retry_on`` counts as a failed attempt, like a falsy
value. At the deadline it raises :class:`WaitTimeout`
(a ``TimeoutError``) that names ``message`` and carries the last value or the
last exception (also chained as ``__cause__``). ``fn`` is always tried at least
once, and once more after the deadline has passed, so a slow last attempt still
counts. The deadline is a bound for a condition, never a timing assertion.

    >>> until(lambda: 42, timeout_s=1, message="the answer")
    42
    >>> until(lambda: [], timeout_s=0.05, interval_s=0.01, message="a non-empty list")
    Traceback (most recent call last):
    ...
    testenv.wait.WaitTimeout: timed out after 0.05 s waiting for a non-empty list; last value: []

``until_async`` is the asyncio twin: it awaits ``fn()`` if it returns an
awaitable, and sleeps with ``asyncio.sleep``.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypedDict, TypeVar, Unpack, cast

T = TypeVar("T")

Retry = tuple[type[BaseException], ...]
#: By default any ``Exception`` from ``fn`` is one more failed attempt (it is
#: re-raised, chained, at the deadline); pass a narrower tuple to fail at once.
RETRY_ON: Retry = (Exception,)


class WaitTimeout(TimeoutError):
    """The condition was not met in time: ``last_value`` or ``last_error`` says why."""

    def __init__(
        self, message: str, timeout_s: float, last_value: object, last_error: BaseException | None
    ) -> None:
        self.message = message
        self.timeout_s = timeout_s
        self.last_value = last_value
        self.last_error = last_error
        last = f"last error: {last_error!r}" if last_error else f"last value: {last_value!r}"
        super().__init__(f"timed out after {timeout_s:g} s waiting for {message}; {last}")


class _Attempts:
    """The bookkeeping both twins share: the deadline and the last outcome."""

    def __init__(
        self,
        timeout_s: float,
        interval_s: float = 0.05,
        message: str = "a condition",
        retry_on: Retry = RETRY_ON,
    ) -> None:
        if timeout_s < 0:
            raise ValueError(f"timeout_s must be >= 0, got {timeout_s}")
        self.timeout_s = timeout_s
        self.interval_s = interval_s
        self.message = message
        self.retry_on = retry_on
        self.deadline = time.monotonic() + timeout_s
        self.last_value: Any = None
        self.last_error: BaseException | None = None
        self.final = False  # the attempt that started after the deadline was made

    def attempt(self, fn: Callable[[], Any]) -> bool:
        """Call ``fn`` once; whether it gave a truthy value (kept in ``last_value``)."""
        try:
            self.last_value, self.last_error = fn(), None
        except self.retry_on as exc:
            self.last_value, self.last_error = None, exc
        return bool(self.last_value)

    def next_sleep(self) -> float:
        """Seconds to sleep before the next attempt; raise once the last one failed."""
        remaining = self.deadline - time.monotonic()
        if self.final:
            raise WaitTimeout(
                self.message, self.timeout_s, self.last_value, self.last_error
            ) from self.last_error
        if remaining <= 0:
            self.final = True
            return 0.0
        return min(self.interval_s, remaining)


class Options(TypedDict, total=False):
    """The keywords both twins take besides ``timeout_s`` (defaults in :class:`_Attempts`)."""

    interval_s: float
    message: str
    retry_on: Retry


def until(fn: Callable[[], T], *, timeout_s: float, **options: Unpack[Options]) -> T:
    """Return the first truthy ``fn()``; raise :class:`WaitTimeout` after ``timeout_s``."""
    attempts = _Attempts(timeout_s, **options)
    while not attempts.attempt(fn):
        time.sleep(attempts.next_sleep())
    return cast(T, attempts.last_value)


async def until_async(
    fn: Callable[[], T | Awaitable[T]], *, timeout_s: float, **options: Unpack[Options]
) -> T:
    """The asyncio twin of :func:`until`: ``fn`` may be a plain or an async callable."""
    attempts = _Attempts(timeout_s, **options)
    while not attempts.attempt(await _settled(fn)):  # noqa: ASYNC110 (polling is the point)
        await asyncio.sleep(attempts.next_sleep())
    return cast(T, attempts.last_value)


async def _settled(fn: Callable[[], T | Awaitable[T]]) -> Callable[[], T]:
    """Call ``fn`` and await its result if needed; a thunk that returns it or re-raises."""
    try:
        value = fn()
        result = cast(T, await value if inspect.isawaitable(value) else value)
    except BaseException as exc:  # re-raised by the thunk: attempt() sorts it out
        error = exc

        def fail() -> T:
            raise error

        return fail
    return lambda: result
