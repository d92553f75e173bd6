"""Snapshots for tests of every component: the target greeter.ns:grpc unless told otherwise."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kuberesolver.core.snapshot import Endpoint, Snapshot, TargetRef


def make_snapshot(
    endpoints: Iterable[Endpoint],
    *,
    revision: int = 1,
    service: str = "greeter",
    namespace: str = "ns",
    port: str | int = "grpc",
    port_number: int = 50051,
    port_name: str = "grpc",
    service_config: dict[str, Any] | None = None,
) -> Snapshot:
    target = TargetRef(service, namespace, port, port_name, port_number)
    return Snapshot(target, revision, tuple(endpoints), service_config or {})
