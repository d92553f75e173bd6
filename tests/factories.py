"""Fixture factories: hand a test a maker, and stop everything it made once the test ends."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


def stopped_after(make: Callable[P, T], stop: Callable[[T], object]) -> Iterator[Callable[P, T]]:
    """Yield ``make``, remembering what each call made; then ``stop`` each, oldest first.

    A fixture writes ``yield from stopped_after(Backend, Backend.stop)``.
    """
    made: list[T] = []

    def tracked(*args: P.args, **kwargs: P.kwargs) -> T:
        item = make(*args, **kwargs)
        made.append(item)
        return item

    yield tracked
    for item in made:
        stop(item)
