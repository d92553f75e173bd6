"""asyncio twins: ``kuberesolver.aio.insecure_channel`` / ``secure_channel``.

A stable facade; the implementation is :mod:`kuberesolver.client.aio`. Needs the
``client`` extra.
"""

from kuberesolver.core.extras import client_extra

with client_extra():
    from kuberesolver.client.aio import Channel, insecure_channel, secure_channel

__all__ = ["Channel", "insecure_channel", "secure_channel"]
