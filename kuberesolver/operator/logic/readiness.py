"""What ``GET /readyz`` answers: the conditions a replica must meet before it takes traffic.

Pure: :func:`unmet` turns a :class:`Readiness` reading into the list of what is
still missing, one line each; an empty list means ready. The server that
answers the probe is :mod:`kuberesolver.operator.runtime.ready_server`.

A replica is ready once its first lists are in (Services and EndpointSlices,
and Pods when the xDS feed reads them, unless the API refuses the Pods: they
are optional, and the feed follows the slices alone meanwhile), its ADS server
listens when xDS is on, and, if it holds the Lease, its target loops have
started. A standby replica is ready without the Lease: it serves the webhook
and xDS too. Later watch errors
do not make a ready replica unready: the last good state is served, and an
apiserver blip must not empty the Services in front of both replicas.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Readiness", "unmet"]


@dataclass(frozen=True, slots=True)
class Readiness:
    """One reading of a replica's state."""

    listed: tuple[tuple[str, bool], ...]
    """``(resource, listed once)`` for every resource the replica watches."""
    xds_listening: bool | None = None
    """Whether the ADS server listens (``None``: xDS is off)."""
    holds_lease: bool = False
    leading_started: bool = False


def unmet(reading: Readiness) -> list[str]:
    """What keeps the replica from being ready; empty when it is.

    >>> unmet(Readiness(listed=(("services", True), ("endpointslices", False))))
    ['endpointslices: not listed yet']
    >>> unmet(Readiness(listed=(("services", True),), xds_listening=True))
    []
    """
    missing = [f"{resource}: not listed yet" for resource, done in reading.listed if not done]
    if reading.xds_listening is False:
        missing.append("xds: the ADS server does not listen yet")
    if reading.holds_lease and not reading.leading_started:
        missing.append("leader: holds the Lease, its target loops have not started")
    return missing
