"""The reflector's pure parts: skipping what cannot be read, objects a transport decoded
itself, a list its caller could not take, and backing off with jitter.

List, watch, 410 and bookmarks against the real API server are in
tests/integration/test_reflector.py.
"""

from __future__ import annotations

import logging
import random
import socket
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from kuberesolver.core.backoff import Backoff
from kuberesolver.kube.credentials import ApiConfig
from kuberesolver.kube.http import Collection, HttpApi
from kuberesolver.kube.reflector import Decoded, Listed, Reflector
from testenv.wait import until

_log = logging.getLogger("test.reflector")


class _Fixed:
    """A transport whose list is fixed: the objects under test, as the API would send them."""

    what = "things"

    def __init__(self, items: list[Mapping[str, Any]], decoded: tuple[Any, ...] = ()) -> None:
        self.items = items
        self.decoded = decoded

    def list(self) -> Listed:
        return Listed(self.items, "7", self.decoded)

    def watch(self, resource_version: str) -> Iterator[Mapping[str, Any]]:
        raise AssertionError("not watched in these tests")


def _obj(name: str, rv: str, **extra: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "resourceVersion": rv}, **extra}


def _decode(obj: Mapping[str, Any]) -> int:
    return int(obj["spec"]["n"])  # raises on anything else


def test_an_undecodable_object_is_logged_once_and_skipped_keeping_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="test.reflector")
    listed: list[list[int]] = []
    events: list[tuple[str, int]] = []
    bad = _obj("bad", "5", spec={"n": "not a number"})
    reflector = Reflector(
        _Fixed([_obj("a", "3", spec={"n": 1}), bad, _obj("b", "4", spec={"n": 2})]),
        _decode, listed.append, lambda kind, n: events.append((kind, n)), log=_log,
    )  # fmt: skip
    reflector.relist()
    assert listed == [[1, 2]]
    assert reflector.resource_version == "7"
    for _ in range(2):  # the same problem again: counted, not logged again
        reflector.handle({"type": "MODIFIED", "object": bad})
    reflector.handle({"type": "MODIFIED", "object": "not an object"})
    reflector.handle({"type": "MODIFIED", "object": _obj("a", "9", spec={"n": 3})})
    assert events == [("MODIFIED", 3)]
    assert reflector.resource_version == "9"
    assert reflector.skipped == 4
    logged = [r.getMessage() for r in caplog.records]
    assert sum("/bad (resourceVersion 5)" in m for m in logged) == 1  # listed, watched: once
    assert any("not an object" in m for m in logged)


def test_a_failing_handler_is_logged_and_the_next_event_still_handled() -> None:
    seen: list[int] = []

    def on_event(kind: str, n: int) -> None:
        if n < 0:
            raise ValueError("negative")
        seen.append(n)

    reflector = Reflector(_Fixed([]), _decode, lambda _: None, on_event, log=_log)
    reflector.handle({"type": "ADDED", "object": _obj("x", "1", spec={"n": -1})})
    reflector.handle({"type": "ADDED", "object": _obj("y", "2", spec={"n": 5})})
    assert seen == [5]
    assert reflector.skipped == 1


def test_what_the_transport_decoded_itself_is_handed_on_as_it_is() -> None:
    """The operator's EndpointSlice codec reads raw bytes straight to views: no ``decode``."""
    listed: list[list[int]] = []
    events: list[tuple[str, int]] = []
    reflector = Reflector(
        _Fixed([_obj("a", "3", spec={"n": 1})], decoded=(40, 41)), _decode,
        listed.append, lambda kind, n: events.append((kind, n)), log=_log,
    )  # fmt: skip
    reflector.relist()
    assert listed == [[1, 40, 41]]
    reflector.handle(Decoded("MODIFIED", "12", 42))
    assert events == [("MODIFIED", 42)]
    assert reflector.resource_version == "12"


def test_a_list_its_caller_could_not_take_is_not_watched_from() -> None:
    """``on_list`` failed (direct mode could not read the Service): list again, never watch
    from a list whose state nobody holds."""
    calls: list[list[int]] = []

    def on_list(items: list[int]) -> None:
        calls.append(items)
        if len(calls) == 1:
            raise OSError("the Service could not be read")

    reflector = Reflector(_Fixed([_obj("a", "3", spec={"n": 1})]), _decode, on_list,
                          lambda *_: None, log=_log)  # fmt: skip
    with pytest.raises(OSError, match="Service"):
        reflector.relist()
    assert reflector.resource_version == ""
    reflector.relist()
    assert reflector.resource_version == "7"
    assert calls == [[1], [1]]


def test_the_backoff_is_capped_jittered_and_reset() -> None:
    b = Backoff(first_s=0.05, cap_s=1.0, rng=random.Random(1))
    pauses = [b.next_s() for _ in range(40)]
    assert all(0.0 <= p <= 1.0 for p in pauses)
    assert pauses[0] <= 0.1
    assert len(set(pauses)) == len(pauses)  # jittered: clients that failed together spread out
    assert max(pauses[5:]) > 0.5  # past the doubling, draws reach toward the cap
    b.reset()
    assert b.next_s() <= 0.1
    with pytest.raises(ValueError, match="0 < first_s <= cap_s"):
        Backoff(first_s=2.0, cap_s=1.0)


def test_an_unreachable_api_is_retried_with_jittered_pauses() -> None:
    with socket.socket() as s:  # a loopback port that nobody listens on: connections refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    api = HttpApi(ApiConfig(server=f"https://127.0.0.1:{port}"), timeout_s=2)
    pauses: list[float] = []

    class _Recorded(Backoff):
        def next_s(self) -> float:
            pause = super().next_s() / 100  # the real draws, scaled down to keep the test short
            pauses.append(pause)
            return pause

    reflector = Reflector(
        Collection(api, "/api/v1/configmaps", "configmaps"), _decode,
        lambda _: None, lambda *_: None, log=_log, backoff=_Recorded(rng=random.Random(3)),
    )  # fmt: skip
    thread = threading.Thread(target=reflector.run, daemon=True)
    thread.start()
    try:
        until(lambda: len(pauses) >= 5, timeout_s=30, message="five retries")
    finally:
        reflector.stop()
        thread.join(10)
        api.close()
    assert reflector.failures >= 5
    assert reflector.lists == 0
    assert len(set(pauses)) == len(pauses)
