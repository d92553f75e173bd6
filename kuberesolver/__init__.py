"""kuberesolver: per-pod gRPC load balancing for Python clients in Kubernetes."""
