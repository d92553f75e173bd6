"""asyncio twins: ``kuberesolver.aio.insecure_channel`` / ``secure_channel``.

They return a :class:`Channel` that implements grpc's public
``grpc.aio.Channel`` interface (aio interceptors, async context manager,
idempotent ``close(grace)``) by delegating to a channel made with the public
``grpc.aio.insecure_channel`` / ``grpc.aio.secure_channel``, balanced exactly
like the sync ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Unpack

import grpc
import grpc.aio

from kuberesolver.client.channel import ChannelOptions, LeasedChannel, open_channel
from kuberesolver.client.settings import ChannelArgs

__all__ = ["Channel", "insecure_channel", "secure_channel"]


class Channel(LeasedChannel, grpc.aio.Channel):  # type: ignore[misc]
    """A ``grpc.aio.Channel`` for a ``kubernetes:`` target; closing it releases the watch."""

    public_name = "kuberesolver.aio.Channel"
    is_aio = True

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


def insecure_channel(
    target: str,
    options: ChannelOptions | None = None,
    compression: grpc.Compression | None = None,
    interceptors: Sequence[Any] | None = None,
    **kwargs: Unpack[ChannelArgs],
) -> Channel:
    """Like ``grpc.aio.insecure_channel``, for a ``kubernetes:`` target."""
    lease, inner = open_channel(
        target,
        options,
        kwargs,
        False,
        lambda to, opts: grpc.aio.insecure_channel(to, opts, compression, interceptors),
    )
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
    lease, inner = open_channel(
        target,
        options,
        kwargs,
        True,
        lambda to, opts: grpc.aio.secure_channel(to, credentials, opts, compression, interceptors),
    )
    return Channel(lease, inner, target)
