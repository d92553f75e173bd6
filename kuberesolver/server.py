"""A gRPC server that drains before it stops: ``kuberesolver.server.DrainableServer``.

A stable facade; the implementation is :mod:`kuberesolver.client.server`.
"""

from kuberesolver.client.server import DrainableServer

__all__ = ["DrainableServer"]
