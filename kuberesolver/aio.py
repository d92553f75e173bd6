"""asyncio twins: ``kuberesolver.aio.insecure_channel`` / ``secure_channel``.

They return a :class:`Channel` that implements grpc's public
``grpc.aio.Channel`` interface (aio interceptors, async context manager,
idempotent ``close(grace)``) by delegating to a channel made with the public
``grpc.aio.insecure_channel`` / ``grpc.aio.secure_channel``, balanced exactly
like the sync ones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Unpack

import grpc
import grpc.aio

from kuberesolver.channel import (
    ChannelOptions,
    Lease,
    channel_options,
    is_kuberesolver_target,
    open_lease,
    passthrough_options,
    release_on_close,
)
from kuberesolver.settings import ChannelArgs
from kuberesolver.snapshot import Snapshot
from kuberesolver.target import ParsedTarget

__all__ = ["Channel", "insecure_channel", "secure_channel"]


def _nothing() -> None:
    pass


class Channel(grpc.aio.Channel):  # type: ignore[misc]
    """A ``grpc.aio.Channel`` for a ``kubernetes:`` target; closing it releases the watch."""

    def __init__(self, lease: Lease | None, channel: grpc.aio.Channel, target: str = "") -> None:
        self._channel = channel
        self._lease = lease
        self._target = target or (lease.xds_target if lease is not None else "")
        self._release = release_on_close(self, lease) if lease is not None else _nothing

    @property
    def snapshot(self) -> Snapshot:
        """The last good snapshot this channel follows (LookupError: not a kuberesolver target)."""
        return self._held().snapshot

    @property
    def target(self) -> ParsedTarget:
        """The parsed ``kubernetes:`` target."""
        return self._held().target

    @property
    def lease(self) -> Lease:
        """This channel's hold on its target (its xDS name, directory and label)."""
        return self._held()

    def _held(self) -> Lease:
        if self._lease is None:
            raise LookupError(
                f"{self._target!r} is not a kuberesolver target: grpc resolves it as it is, "
                "so it has no snapshot"
            )
        return self._lease

    async def __aenter__(self) -> Channel:
        return self

    async def __aexit__(self, exc_type: object, exc_val: object, exc_tb: object) -> None:
        await self.close(None)

    async def close(self, grace: float | None = None) -> None:
        """Close the channel (in-flight calls get ``grace`` seconds), release the watch.

        Idempotent.
        """
        try:
            await self._channel.close(grace)
        finally:
            self._release()

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        return self._channel.get_state(try_to_connect)

    async def wait_for_state_change(self, last_observed_state: grpc.ChannelConnectivity) -> None:
        await self._channel.wait_for_state_change(last_observed_state)

    async def channel_ready(self) -> None:
        await self._channel.channel_ready()

    def unary_unary(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
        _registered_method: bool | None = False,
    ) -> Any:
        return self._channel.unary_unary(
            method, request_serializer, response_deserializer, _registered_method
        )

    def unary_stream(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
        _registered_method: bool | None = False,
    ) -> Any:
        return self._channel.unary_stream(
            method, request_serializer, response_deserializer, _registered_method
        )

    def stream_unary(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
        _registered_method: bool | None = False,
    ) -> Any:
        return self._channel.stream_unary(
            method, request_serializer, response_deserializer, _registered_method
        )

    def stream_stream(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
        _registered_method: bool | None = False,
    ) -> Any:
        return self._channel.stream_stream(
            method, request_serializer, response_deserializer, _registered_method
        )

    def __repr__(self) -> str:
        return f"<kuberesolver.aio.Channel {self._target}>"


def insecure_channel(
    target: str,
    options: ChannelOptions | None = None,
    compression: grpc.Compression | None = None,
    interceptors: Sequence[Any] | None = None,
    **kwargs: Unpack[ChannelArgs],
) -> Channel:
    """Like ``grpc.aio.insecure_channel``, for a ``kubernetes:`` target."""
    if not is_kuberesolver_target(target):
        opts = passthrough_options(options, kwargs, secure=False)
        inner = grpc.aio.insecure_channel(target, opts, compression, interceptors)
        return Channel(None, inner, target)
    lease, name = open_lease(target, kwargs)
    try:
        inner = grpc.aio.insecure_channel(
            lease.xds_target, channel_options(options, name, False), compression, interceptors
        )
    except BaseException:
        lease.release()
        raise
    return Channel(lease, inner, target)


def secure_channel(
    target: str,
    credentials: grpc.ChannelCredentials,
    options: ChannelOptions | None = None,
    compression: grpc.Compression | None = None,
    interceptors: Sequence[Any] | None = None,
    **kwargs: Unpack[ChannelArgs],
) -> Channel:
    """Like ``grpc.aio.secure_channel``, for a ``kubernetes:`` target.

    The TLS name and ``:authority`` default to ``service.namespace``;
    ``server_name`` overrides both.
    """
    if not is_kuberesolver_target(target):
        opts = passthrough_options(options, kwargs, secure=True)
        inner = grpc.aio.secure_channel(target, credentials, opts, compression, interceptors)
        return Channel(None, inner, target)
    lease, name = open_lease(target, kwargs)
    try:
        inner = grpc.aio.secure_channel(
            lease.xds_target,
            credentials,
            channel_options(options, name, True),
            compression,
            interceptors,
        )
    except BaseException:
        lease.release()
        raise
    return Channel(lease, inner, target)
