"""The one way the operator and the projector find their API credentials.

In-cluster (the Pod's ServiceAccount) when there and no kubeconfig is named;
else the named kubeconfig, then ``$KUBECONFIG``, then ``~/.kube/config``.
Imported by both; it imports neither. This builds a ``kubernetes`` client
(the operator); :mod:`.credentials` reads the same credentials without that
package (the projector, on :mod:`.http`).
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["load_client"]


def load_client(kubeconfig: str = "", *, pool_maxsize: int | None = None) -> tuple[Any, str]:
    """A ``kubernetes.client.ApiClient`` and the namespace of the kubeconfig's context ("" if none).

    ``pool_maxsize`` sizes the connection pool (for callers that use threads).
    """
    from kubernetes import client, config

    configuration = client.Configuration()
    namespace = ""
    loaded = False
    if not kubeconfig:
        try:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except config.ConfigException:
            pass
        else:
            loaded = True
    if not loaded:
        path = kubeconfig or os.environ.get("KUBECONFIG") or None
        config.load_kube_config(config_file=path, client_configuration=configuration)  # type: ignore[no-untyped-call]
        try:
            _, active = config.list_kube_config_contexts(config_file=path)  # type: ignore[no-untyped-call]
            namespace = str((active or {}).get("context", {}).get("namespace") or "")
        except Exception:  # a kubeconfig without contexts still works with its defaults
            namespace = ""
    if pool_maxsize is not None:
        configuration.connection_pool_maxsize = pool_maxsize
    return client.ApiClient(configuration), namespace
