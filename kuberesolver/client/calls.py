"""What a channel adds to each call before grpc sees it.

- **methodConfig timeouts.** grpcio's C core ends calls under a service-config
  (xDS ``max_stream_duration``) timeout 1-2 s early, so those timeouts are not
  served to grpc. Instead each call that matches a ``methodConfig`` entry with
  a ``timeout`` gets it as its deadline, as grpc would: the call's own
  ``timeout`` wins when it is shorter, the configured one when it is.
- **A snapshot not mounted yet.** A call with ``wait_for_ready=True`` goes to
  grpc, which holds it until the target resolves (when the file appears). Any
  other call fails at once with ``UNAVAILABLE`` and a message that names the
  missing file, as grpc fails a call on a name it cannot resolve.
- **Fork.** A channel made before ``fork()`` refuses every call in the child
  (:class:`ForkedChannelError`): its xDS server and file watch are threads of the
  parent, which the child does not have.

Pure wrappers around grpc's own multicallables: the sync and aio ones alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Final, Protocol

import grpc
import grpc.aio

from kuberesolver.core.service_config import MethodRule

__all__ = [
    "CallRules",
    "ForkedChannelError",
    "SnapshotMissing",
    "timeout_for",
    "wrap",
]

_CALL_ARGS: Final = ("timeout", "metadata", "credentials", "wait_for_ready", "compression")
"""The arguments after the request, in grpc's positional order (sync multicallables)."""


class ForkedChannelError(RuntimeError):
    """A kuberesolver channel made before ``fork()`` was used in the child process."""


class CallRules(Protocol):
    """What the wrapper asks of a channel's lease at each call."""

    def check_process(self) -> None:
        """Raise :class:`ForkedChannelError` in a child forked after the channel was made."""

    @property
    def missing(self) -> str | None:
        """What is missing while the snapshot is not mounted (None: it is there)."""

    def method_timeout(self, method: str) -> float | None:
        """The ``methodConfig`` timeout in seconds for ``method`` (None: none)."""


def timeout_for(rules: list[MethodRule], method: str) -> float | None:
    """The timeout of the rule grpc would pick for ``method`` (``/service/method``).

    ``rules`` are most specific first: the exact method, then its service, then the
    default. The first that matches decides, even when it sets no timeout.
    """
    for rule in rules:
        if rule.method:
            matched = method == rule.path
        else:
            matched = not rule.service or method.startswith(rule.prefix)
        if matched:
            return None if rule.timeout_ns is None else rule.timeout_ns / 1e9
    return None


class SnapshotMissing(grpc.RpcError, grpc.Call, grpc.Future):  # type: ignore[misc]
    """A call that failed before it started: UNAVAILABLE, the snapshot is not mounted.

    Raised by unary-response calls; returned (already failed) by ``future()`` and by
    streaming-response calls, whose iteration raises it, as grpc's own calls do.
    """

    def __init__(self, details: str) -> None:
        super().__init__(details)
        self._details = details

    def __str__(self) -> str:
        return f"<SnapshotMissing: StatusCode.UNAVAILABLE: {self._details}>"

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE

    def details(self) -> str:
        return self._details

    def initial_metadata(self) -> tuple[()]:
        return ()

    def trailing_metadata(self) -> tuple[()]:
        return ()

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> float | None:
        return None

    def cancel(self) -> bool:
        return False

    def cancelled(self) -> bool:
        return False

    def running(self) -> bool:
        return False

    def done(self) -> bool:
        return True

    def add_callback(self, callback: Callable[[], None]) -> bool:
        return False

    def result(self, timeout: float | None = None) -> Any:
        raise self

    def exception(self, timeout: float | None = None) -> SnapshotMissing:
        return self

    def traceback(self, timeout: float | None = None) -> None:
        return None

    def add_done_callback(self, fn: Callable[[Any], None]) -> None:
        fn(self)

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        raise self


class _MultiCallable:
    """One method of the channel: grpc's multicallable, with the rules above applied."""

    def __init__(self, inner: Any, method: str, rules: CallRules, aio: bool, streams: bool) -> None:
        self._inner = inner
        self._method = method
        self._rules = rules
        self._aio = aio
        self._streams = streams  # the response is a stream

    def _arguments(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[Any, dict[str, Any]]:
        """The request and the other arguments by name, the configured timeout applied."""
        self._rules.check_process()
        named = dict(kwargs)
        if args:
            first = args[0]
        else:
            first = named.pop("request_iterator" if "request_iterator" in named else "request")
        named.update(zip(_CALL_ARGS, args[1:], strict=False))
        configured = self._rules.method_timeout(self._method)
        if configured is not None:
            own = named.get("timeout")
            named["timeout"] = configured if own is None else min(own, configured)
        return first, named

    def _prepared(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[Any, dict[str, Any], Exception | None]:
        """:meth:`_arguments`, and the error that refuses the call (``None``: it goes ahead)."""
        first, named = self._arguments(args, kwargs)
        missing = self._rules.missing
        if missing is None or named.get("wait_for_ready"):
            return first, named, None
        details = (
            f"{missing}; the channel follows it once it appears "
            "(calls with wait_for_ready=True wait for it)"
        )
        return first, named, self._refuse(details)

    def _refuse(self, details: str) -> Exception:
        if self._aio:
            error: Exception = grpc.aio.AioRpcError(
                grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), details
            )
            return error
        return SnapshotMissing(details)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        first, named, refusal = self._prepared(args, kwargs)
        if refusal is not None:
            if self._streams and not self._aio:
                return refusal
            raise refusal
        return self._inner(first, **named)

    def with_call(self, *args: Any, **kwargs: Any) -> Any:
        first, named, refusal = self._prepared(args, kwargs)
        if refusal is not None:
            raise refusal
        return self._inner.with_call(first, **named)

    def future(self, *args: Any, **kwargs: Any) -> Any:
        first, named, refusal = self._prepared(args, kwargs)
        if refusal is not None:
            return refusal
        return self._inner.future(first, **named)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def wrap(kind: str, inner: Any, method: str, rules: CallRules, aio: bool) -> Any:
    """``inner`` (grpc's ``unary_unary``-like multicallable) with the rules applied."""
    return _MultiCallable(inner, method, rules, aio, streams=kind.endswith("_stream"))
