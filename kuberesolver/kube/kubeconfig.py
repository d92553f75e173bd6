"""The one way the operator and the projector find their API credentials, and the
deadlines the ``kubernetes`` client's requests keep (the operator's and direct mode's).

In-cluster (the Pod's ServiceAccount) when there and no kubeconfig is named;
else the named kubeconfig, then ``$KUBECONFIG``, then ``~/.kube/config``.
Imported by both; it imports neither. This builds a ``kubernetes`` client
(the operator); :mod:`.credentials` reads the same credentials without that
package (the projector, on :mod:`.http`).

**Deadlines.** The ``kubernetes`` client retries a failed request three times
inside urllib3 by default (a read timeout on a GET too), silently: against an
API host that accepts TCP and never answers, a "30 s" call took 120 s with no
log line. :func:`no_hidden_retries` turns that off on every configuration made
with it (here, and direct mode's :mod:`.kubernetes_client`), so a request's
``_request_timeout`` is its whole cost; the callers' own loops retry, with
backoff, and log each failure with the host it names. :data:`REQUEST_TIMEOUT_S`
bounds a request (connect and read together, the urllib3 ``total``); a watch
gets :data:`CONNECT_TIMEOUT_S` to connect and a read timeout of its own (the
longest silence it accepts).
"""

from __future__ import annotations

import os
from typing import Any, Final

__all__ = ["CONNECT_TIMEOUT_S", "REQUEST_TIMEOUT_S", "load_client", "no_hidden_retries"]

REQUEST_TIMEOUT_S: Final = 30.0
"""A request that is not a watch gives up after this, connecting and reading included."""
CONNECT_TIMEOUT_S: Final = 10.0
"""A watch gives up connecting after this."""


def no_hidden_retries(configuration: Any) -> Any:
    """``configuration`` (a ``kubernetes.client.Configuration``) with urllib3's retries off:
    one attempt per request, so its timeout is its deadline. Returns it."""
    configuration.retries = False
    return configuration


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
    return client.ApiClient(no_hidden_retries(configuration)), namespace
