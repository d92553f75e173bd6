"""asyncio twins: ``kuberesolver.aio.insecure_channel`` / ``secure_channel`` return
real ``grpc.aio.Channel`` objects (aio interceptors, async context manager,
idempotent ``close(grace)``), balanced exactly like the sync ones.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import grpc
from grpc.aio import _channel as _aio_channel

from kuberesolver.channel import (
    ChannelOptions,
    Lease,
    _channel_options,
    _lease,
    _release_on_close,
)
from kuberesolver.snapshot import Snapshot

__all__ = ["Channel", "insecure_channel", "secure_channel"]


class Channel(_aio_channel.Channel):  # type: ignore[misc]
    """grpc's own aio channel on the xDS target, releasing the watch on close."""

    def __init__(
        self,
        lease: Lease,
        options: ChannelOptions | None,
        credentials: grpc.ChannelCredentials | None,
        compression: grpc.Compression | None,
        interceptors: Sequence[Any] | None,
        server_name: str | None,
    ) -> None:
        name = server_name or lease.snapshot.server_name or lease.target.server_name
        super().__init__(
            lease.xds_target,
            _channel_options(options, name, credentials is not None, lease.default_options),
            None if credentials is None else credentials._credentials,
            compression,
            interceptors,
        )
        self.kuberesolver_lease = lease
        self._kuberesolver_release = _release_on_close(self, lease)

    @property
    def snapshot(self) -> Snapshot:
        """The last good snapshot this channel follows."""
        return self.kuberesolver_lease.snapshot

    async def close(self, grace: float | None = None) -> None:
        """Close the channel (in-flight calls get ``grace`` seconds), release the watch.

        Idempotent.
        """
        await super().close(grace)
        self._kuberesolver_release()

    async def __aexit__(self, exc_type: object, exc_val: object, exc_tb: object) -> None:
        await self.close(None)


def insecure_channel(
    target: str,
    options: ChannelOptions | None = None,
    compression: grpc.Compression | None = None,
    interceptors: Sequence[Any] | None = None,
    *,
    snapshot_dir: str | os.PathLike[str] | None = None,
    namespace: str | None = None,
    zone: str | None = None,
    lb_policy: str | None = None,
    max_attempts: int | None = None,
    authority: str | None = None,
    debounce_ms: int | None = None,
    poll_interval_ms: int | None = None,
    namespace_file: str | os.PathLike[str] | None = None,
    pick_metrics: bool | None = None,
    cluster_ip_fallback: bool | None = None,
    failover_timeout_ms: int | None = None,
    keepalive_ms: int | None = None,
) -> grpc.aio.Channel:
    """Like ``grpc.aio.insecure_channel``, for a ``kubernetes:`` target."""
    lease = _lease(
        target,
        snapshot_dir=snapshot_dir,
        namespace=namespace,
        zone=zone,
        lb_policy=lb_policy,
        max_attempts=max_attempts,
        debounce_ms=debounce_ms,
        poll_interval_ms=poll_interval_ms,
        namespace_file=namespace_file,
        pick_metrics=pick_metrics,
        cluster_ip_fallback=cluster_ip_fallback,
        failover_timeout_ms=failover_timeout_ms,
        keepalive_ms=keepalive_ms,
    )
    try:
        return Channel(lease, options, None, compression, interceptors, authority)
    except BaseException:
        lease.release()
        raise


def secure_channel(
    target: str,
    credentials: grpc.ChannelCredentials,
    options: ChannelOptions | None = None,
    compression: grpc.Compression | None = None,
    interceptors: Sequence[Any] | None = None,
    *,
    snapshot_dir: str | os.PathLike[str] | None = None,
    namespace: str | None = None,
    zone: str | None = None,
    lb_policy: str | None = None,
    max_attempts: int | None = None,
    server_name: str | None = None,
    debounce_ms: int | None = None,
    poll_interval_ms: int | None = None,
    namespace_file: str | os.PathLike[str] | None = None,
    pick_metrics: bool | None = None,
    cluster_ip_fallback: bool | None = None,
    failover_timeout_ms: int | None = None,
    keepalive_ms: int | None = None,
) -> grpc.aio.Channel:
    """Like ``grpc.aio.secure_channel``, for a ``kubernetes:`` target.

    The TLS name and ``:authority`` default to ``service.namespace``;
    ``server_name`` overrides both.
    """
    lease = _lease(
        target,
        snapshot_dir=snapshot_dir,
        namespace=namespace,
        zone=zone,
        lb_policy=lb_policy,
        max_attempts=max_attempts,
        debounce_ms=debounce_ms,
        poll_interval_ms=poll_interval_ms,
        namespace_file=namespace_file,
        pick_metrics=pick_metrics,
        cluster_ip_fallback=cluster_ip_fallback,
        failover_timeout_ms=failover_timeout_ms,
        keepalive_ms=keepalive_ms,
    )
    try:
        return Channel(lease, options, credentials, compression, interceptors, server_name)
    except BaseException:
        lease.release()
        raise
