"""The ``client`` extra: a missing client dependency raises an error that names the install.

The base distribution depends on nothing heavy. The client's dependencies
(grpcio, xds-protos, protobuf, watchfiles) come with ``kuberesolver[client]``;
every import of client code that may lack them runs under :func:`client_extra`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Final

__all__ = ["CLIENT_INSTALL", "client_extra"]

CLIENT_INSTALL: Final = "pip install 'kuberesolver[client]'"

_CLIENT_MODULES: Final = frozenset(
    {"grpc", "envoy", "xds", "udpa", "validate", "google", "watchfiles"}
)
"""The top-level modules the client's dependencies install."""


@contextlib.contextmanager
def client_extra() -> Iterator[None]:
    """Import client code; a module of the client's dependencies missing names the extra.

    Raises ``ModuleNotFoundError`` (an ``ImportError``) with the missing module's name.
    """
    try:
        yield
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] not in _CLIENT_MODULES:
            raise
        raise ModuleNotFoundError(
            f"the kuberesolver client needs grpcio, xds-protos, protobuf and watchfiles "
            f"(no module named {exc.name!r}): {CLIENT_INSTALL}",
            name=exc.name,
        ) from exc
