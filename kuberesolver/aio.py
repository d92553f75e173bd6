"""asyncio twins: ``kuberesolver.aio.insecure_channel`` / ``secure_channel``.

A stable facade; the implementation is :mod:`kuberesolver.client.aio`.
"""

from kuberesolver.client.aio import Channel, insecure_channel, secure_channel

__all__ = ["Channel", "insecure_channel", "secure_channel"]
