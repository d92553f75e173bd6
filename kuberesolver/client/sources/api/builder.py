"""Registering direct mode for a scheme, and the one rule that picks a target's source.

Go's kuberesolver, in Python names::

    kuberesolver.register_in_cluster()                  # RegisterInCluster()
    kuberesolver.register_in_cluster_with_schema("k8s")  # RegisterInClusterWithSchema("k8s")
    kuberesolver.register(kuberesolver.Builder(client))  # resolver.Register(NewBuilder(...))

**Which source a channel uses** (file, API or operator), decided in this order:

1. the channel's ``source=`` argument (``"file"``, ``"api"`` or ``"operator"``:
   the operator's xDS, :mod:`kuberesolver.client.sources.operator`), else
2. the ``KUBERESOLVER_SOURCE`` environment variable, else
3. ``"api"`` when the target's scheme was registered for direct mode, else
4. ``"file"``: the operator's snapshot under the snapshot directory.

Nothing is probed: a mounted snapshot never overrides a registration, and a
registration never overrides ``source="file"``. ``"api"`` for a scheme that
was not registered uses a default client (below).

**Which credentials** a builder without a client uses, made at its first channel
(:func:`~kuberesolver.kube.client.new_k8s_client`): in a Pod, the Pod's
ServiceAccount; out of cluster, or with ``kubeconfig=``, a kubeconfig found as
``kubectl`` finds it: the ``kubeconfig`` argument, else ``$KUBECONFIG`` (files
merged), else ``~/.kube/config``, in its current context (or ``context=``)::

    kuberesolver.register(kuberesolver.Builder(kubeconfig="~/.kube/dev.yaml"))
"""

from __future__ import annotations

import os
import threading
from typing import Final, Literal

from kuberesolver.client.target import DEFAULT_SCHEME, register_scheme
from kuberesolver.kube.client import K8sClient, new_k8s_client

__all__ = [
    "Builder",
    "Source",
    "builder_for",
    "choose_source",
    "register",
    "register_in_cluster",
    "register_in_cluster_with_schema",
    "unregister",
]

Source = Literal["file", "api", "operator"]
SOURCES: Final = ("file", "api", "operator")

_lock = threading.Lock()
_builders: dict[str, Builder] = {}


class Builder:
    """Direct mode for one scheme: targets resolved by watching the API with ``k8s_client``.

    Without a client, one is made at the first channel and shared by every target of
    the scheme: in-cluster in a Pod (as Go's ``NewBuilder(nil, ...)`` does), else from
    the kubeconfig (``kubeconfig``, ``$KUBECONFIG``, ``~/.kube/config``, as kubectl).
    """

    def __init__(
        self,
        k8s_client: K8sClient | None = None,
        scheme: str = DEFAULT_SCHEME,
        *,
        kubeconfig: str | os.PathLike[str] | None = None,
        context: str | None = None,
    ) -> None:
        if k8s_client is not None and (kubeconfig is not None or context is not None):
            raise ValueError("pass a k8s_client or a kubeconfig/context, not both")
        self._client = k8s_client
        self._kubeconfig = kubeconfig
        self._context = context
        self.scheme = scheme.strip().lower().removesuffix("://").removesuffix(":")
        self._lock = threading.Lock()

    def client(self) -> K8sClient:
        """The client, made on first use when none was given (see the class)."""
        with self._lock:
            if self._client is None:
                self._client = new_k8s_client(self._kubeconfig, context=self._context)
            return self._client

    def __repr__(self) -> str:
        host = self._client.host if self._client is not None else "not yet made"
        return f"Builder(scheme={self.scheme!r}, api={host!r})"


def register(builder: Builder) -> Builder:
    """Resolve ``builder.scheme`` targets through the API from now on. Returns ``builder``."""
    register_scheme(builder.scheme)
    with _lock:
        _builders[builder.scheme] = builder
    return builder


def register_in_cluster() -> Builder:
    """``kubernetes:///`` targets watch the API as this pod's ServiceAccount."""
    return register_in_cluster_with_schema(DEFAULT_SCHEME)


def register_in_cluster_with_schema(scheme: str) -> Builder:
    """``<scheme>:///`` targets watch the API as this pod's ServiceAccount."""
    return register(Builder(None, scheme))


def unregister(scheme: str = DEFAULT_SCHEME) -> None:
    """Back to the file source for ``scheme`` (the scheme stays accepted). Idempotent."""
    with _lock:
        _builders.pop(scheme.strip().lower(), None)


def builder_for(scheme: str) -> Builder | None:
    """The builder registered for ``scheme``, if any."""
    with _lock:
        return _builders.get(scheme)


def choose_source(scheme: str, source: str | None) -> Source:
    """Apply the rule above; ``source`` is the argument or the environment variable."""
    if source:
        value = source.strip().lower()
        if value not in SOURCES:
            raise ValueError(f"source must be 'file', 'api' or 'operator', got {source!r}")
        if value == "operator":
            return "operator"
        return "api" if value == "api" else "file"
    return "api" if builder_for(scheme) is not None else "file"


def builder_or_default(scheme: str) -> Builder:
    """The scheme's builder; for an unregistered scheme, one in-cluster builder shared by all."""
    found = builder_for(scheme)
    if found is not None:
        return found
    global _default
    with _lock:
        if _default is None:
            _default = Builder(None, DEFAULT_SCHEME)
        return _default


_default: Builder | None = None
