"""Hand-written snapshots for development: run a client on a laptop, no cluster needed.

``python -m kuberesolver snapshot DIR greeter.demo 127.0.0.1:50051 127.0.0.1:50052``
writes ``DIR/greeter.demo/endpoints.json`` in kubelet's atomic layout, exactly
what a mounted ConfigMap looks like; a client started with
``KUBERESOLVER_DIR=DIR`` (or ``snapshot_dir=DIR``) then dials
``kubernetes:///greeter.demo:<any port>``. Running it again with other
addresses bumps the revision, and running clients follow.

The minimal ``endpoints.json`` a client accepts::

    {"version": 1,
     "target": {"service": "greeter", "namespace": "demo"},
     "revision": 1,
     "endpoints": [{"address": "127.0.0.1", "port": 50051}]}

Everything else has a default: ``ready`` and ``serving`` true, ``terminating``
false, no zone, node or pod, any port name, ``round_robin``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path

from kuberesolver.core.atomic_writer import write_atomic
from kuberesolver.core.snapshot import (
    ENDPOINTS_KEY,
    Endpoint,
    Snapshot,
    SnapshotError,
    TargetRef,
    encode,
    load,
)

__all__ = ["build_snapshot", "parse_address", "write_snapshot"]

_POLICIES = ("round_robin", "weighted_round_robin", "pick_first")


def parse_address(text: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` to ``(host, port)``; ValueError with the reason."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{text!r}: expected ADDRESS:PORT, e.g. 127.0.0.1:50051")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{text!r}: write an IPv6 address in brackets, e.g. [::1]:50051")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"{text!r}: the port must be a number in 1..65535")
    return host, int(port_text)


def build_snapshot(
    target: str,
    addresses: Sequence[str],
    revision: int = 1,
    port: str = "",
    policy: str = "round_robin",
) -> Snapshot:
    """A snapshot of ``service.namespace`` with every address ready. Pure."""
    service, sep, namespace = target.partition(".")
    if not sep or not service or not namespace or "." in namespace:
        raise ValueError(f"{target!r}: expected SERVICE.NAMESPACE, e.g. greeter.demo")
    if policy not in _POLICIES:
        raise ValueError(f"{policy!r}: the policy must be one of {', '.join(_POLICIES)}")
    endpoints = tuple(Endpoint(host, p) for host, p in map(parse_address, addresses))
    return Snapshot(
        target=TargetRef(service, namespace, port=port),
        revision=revision,
        endpoints=endpoints,
        service_config={"loadBalancingConfig": [{policy: {}}]},
    )


def write_snapshot(directory: Path, snapshot: Snapshot) -> Path:
    """Write ``snapshot`` under ``directory/<service>.<namespace>/``; returns the file.

    As the operator does, the revision goes up exactly when the endpoints
    change: one more than the snapshot already there, or the same when its
    target, endpoints and policy are unchanged (then nothing is written).
    """
    target_dir = directory / snapshot.target.server_name
    revision = snapshot.revision
    with contextlib.suppress(SnapshotError):
        old = load(target_dir / ENDPOINTS_KEY)
        same = (old.target, old.endpoints, dict(old.service_config)) == (
            snapshot.target,
            snapshot.endpoints,
            dict(snapshot.service_config),
        )
        revision = old.revision if same else max(revision, old.revision + 1)
    final = Snapshot(
        target=snapshot.target,
        revision=revision,
        endpoints=snapshot.endpoints,
        service_config=snapshot.service_config,
    )
    write_atomic(target_dir, {ENDPOINTS_KEY: encode(final).encode()})
    return target_dir / ENDPOINTS_KEY
