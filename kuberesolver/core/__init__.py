"""The shared bottom: what the client, the operator and the projector all build on.

The snapshot contract (:mod:`.snapshot`), service config and balancing
policies, Kubernetes names, the EndpointSlice fold, kubelet's atomic directory
layout, the retry backoff, and the error that names the ``client`` extra when
its dependencies are missing (:mod:`.extras`). Standard library only: no grpc,
no kubernetes client, no kopf.
"""
