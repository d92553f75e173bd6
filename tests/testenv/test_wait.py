"""testenv.wait: the one polling helper returns the first truthy value or says why not."""

from __future__ import annotations

import asyncio
import doctest
from collections.abc import Callable, Iterator

import pytest

import testenv.wait
from testenv.wait import WaitTimeout, until, until_async


def sequence(*outcomes: object) -> Callable[[], object]:
    """A probe that yields ``outcomes`` in turn (raising those that are exceptions), then
    repeats the last one; ``calls`` counts its calls."""
    it: Iterator[object] = iter(outcomes)
    last: list[object] = [None]

    def probe() -> object:
        probe.calls += 1  # type: ignore[attr-defined]
        last[0] = next(it, last[0])
        if isinstance(last[0], BaseException):
            raise last[0]
        return last[0]

    probe.calls = 0  # type: ignore[attr-defined]
    return probe


def test_returns_the_first_truthy_value_not_a_later_one() -> None:
    probe = sequence(0, "", "first", "second")
    assert until(probe, timeout_s=10, interval_s=0.001) == "first"
    assert probe.calls == 3  # type: ignore[attr-defined]


def test_times_out_with_the_last_value_and_the_message() -> None:
    probe = sequence(0, [], None, {})
    with pytest.raises(TimeoutError) as info:
        until(probe, timeout_s=0.05, interval_s=0.001, message="the moon")
    err = info.value
    assert isinstance(err, WaitTimeout)
    assert err.last_value == {}
    assert err.last_error is None
    assert "the moon" in str(err)
    assert "last value: {}" in str(err)
    assert probe.calls >= 4  # type: ignore[attr-defined]


def test_an_exception_is_a_failed_attempt_and_is_chained_at_the_deadline() -> None:
    boom = LookupError("not there yet")
    probe = sequence(boom)
    with pytest.raises(WaitTimeout) as info:
        until(probe, timeout_s=0.05, interval_s=0.001, message="the thing")
    assert info.value.last_error is boom
    assert info.value.__cause__ is boom
    assert "not there yet" in str(info.value)
    assert probe.calls > 1  # type: ignore[attr-defined]


def test_a_value_after_exceptions_is_returned() -> None:
    probe = sequence(LookupError("a"), AssertionError("b"), 7)
    assert until(probe, timeout_s=10, interval_s=0.001) == 7


def test_an_error_outside_retry_on_propagates_at_once() -> None:
    probe = sequence(ZeroDivisionError("bug"))
    with pytest.raises(ZeroDivisionError):
        until(probe, timeout_s=10, interval_s=0.001, retry_on=(LookupError,))
    assert probe.calls == 1  # type: ignore[attr-defined]


def test_the_last_value_is_the_latest_not_the_first() -> None:
    probe = sequence(None, 0, False)
    with pytest.raises(WaitTimeout) as info:
        until(probe, timeout_s=0.05, interval_s=0.001)
    assert info.value.last_value is False


def test_a_falsy_value_after_an_error_replaces_the_error() -> None:
    probe = sequence(LookupError("gone"), 0)
    with pytest.raises(WaitTimeout) as info:
        until(probe, timeout_s=0.05, interval_s=0.001)
    assert info.value.last_error is None
    assert info.value.last_value == 0
    assert info.value.__cause__ is None


def test_tries_once_more_after_the_deadline() -> None:
    probe = sequence(0, "late")
    assert until(probe, timeout_s=0, interval_s=0.001) == "late"
    assert probe.calls == 2  # type: ignore[attr-defined]


def test_rejects_a_negative_timeout() -> None:
    with pytest.raises(ValueError, match="timeout_s"):
        until(lambda: True, timeout_s=-1)


async def test_async_twin_awaits_and_returns_the_first_truthy_value() -> None:
    values = iter([0, 0, "ok", "later"])

    async def probe() -> object:
        await asyncio.sleep(0)
        return next(values)

    assert await until_async(probe, timeout_s=10, interval_s=0.001) == "ok"
    assert await until_async(lambda: 5, timeout_s=1) == 5


async def test_async_twin_times_out_with_the_last_error() -> None:
    boom = AssertionError("still 2")
    with pytest.raises(WaitTimeout) as info:
        await until_async(sequence(0, boom), timeout_s=0.05, interval_s=0.001)
    assert info.value.last_error is boom


def test_module_docstring_examples() -> None:
    failures, tried = doctest.testmod(testenv.wait, raise_on_error=False, report=True)
    assert tried >= 2
    assert failures == 0
