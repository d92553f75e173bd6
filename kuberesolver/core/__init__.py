"""The shared bottom: what the client, the operator and the projector all build on.

The snapshot contract (:mod:`.snapshot`), service config and balancing
policies, Kubernetes names, the EndpointSlice fold, kubelet's atomic directory
layout and the retry backoff. Standard library only: no grpc, no kubernetes
client, no kopf.
"""
