"""Direct mode: the client watches the Kubernetes API itself, as Go's kuberesolver does.

No operator and no mounted file: each client process lists and watches the
EndpointSlices of its targets (see :mod:`kuberesolver.client.sources.api.watcher`) and
feeds the same in-process xDS path as the file source. Which source a target
uses is one rule (:mod:`kuberesolver.client.sources.api.builder`). The Kubernetes client
library (the ``[direct]`` extra) is loaded only when a client is made.
"""

from kuberesolver.client.sources.api.builder import (
    Builder,
    choose_source,
    register,
    register_in_cluster,
    register_in_cluster_with_schema,
    unregister,
)
from kuberesolver.client.sources.api.watcher import ApiWatcher
from kuberesolver.kube.client import (
    ApiError,
    K8sClient,
    WatchStream,
    new_in_cluster_k8s_client,
    new_insecure_k8s_client,
    new_k8s_client,
    new_kubeconfig_k8s_client,
)

__all__ = [
    "ApiError",
    "ApiWatcher",
    "Builder",
    "K8sClient",
    "WatchStream",
    "choose_source",
    "new_in_cluster_k8s_client",
    "new_insecure_k8s_client",
    "new_k8s_client",
    "new_kubeconfig_k8s_client",
    "register",
    "register_in_cluster",
    "register_in_cluster_with_schema",
    "unregister",
]
