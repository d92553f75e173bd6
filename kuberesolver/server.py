"""A gRPC server that drains before it stops: ``kuberesolver.server.DrainableServer``.

A stable facade; the implementation is :mod:`kuberesolver.client.server`. Needs the
``server`` extra (the client's, and grpcio-channelz).
"""

from kuberesolver.core.extras import client_extra

with client_extra():
    from kuberesolver.client.server import DrainableServer

__all__ = ["DrainableServer"]
