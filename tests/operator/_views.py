"""The Service greeter (port grpc 8080 → 50051) and one EndpointSlice of it, as the operator's
pure logic reads them."""

from __future__ import annotations

from typing import Any

from kuberesolver.core.endpointslices import service_view, slice_view


def greeter_service(ns: str = "ns", annotations: dict[str, str] | None = None, **spec: Any) -> Any:
    """The Service greeter in ``ns``; ``spec`` adds to its spec (``clusterIP=...``)."""
    metadata: dict[str, Any] = {"name": "greeter", "namespace": ns}
    if annotations is not None:
        metadata["annotations"] = annotations
    ports = [{"name": "grpc", "port": 8080, "targetPort": 50051}]
    return service_view({"metadata": metadata, "spec": {"ports": ports, **spec}})


def slices(*ips: str) -> list[Any]:
    """One IPv4 EndpointSlice "s" with an endpoint per address, on port grpc 50051."""
    return [
        slice_view(
            {
                "metadata": {"name": "s"},
                "addressType": "IPv4",
                "ports": [{"name": "grpc", "port": 50051, "protocol": "TCP"}],
                "endpoints": [{"addresses": [ip]} for ip in ips],
            }
        )
    ]
