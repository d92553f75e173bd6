"""Server side of load-aware balancing: the per-call ORCA load report trailer.

grpc's weighted round robin policy weighs each endpoint by
``rps / utilization`` from the load reports its calls carry back in the
trailing metadata key ``endpoint-load-metrics-bin`` (a serialized
``xds.data.orca.v3.OrcaLoadReport``). grpcio has no server-side ORCA API in
Python, so a servicer adds the trailer itself::

    context.set_trailing_metadata((kuberesolver.load_report(cpu_utilization=0.4, rps=120.0),))

Without reports, weighted round robin behaves like round_robin. Both
``rps`` and a utilization must be reported: with ``rps`` missing or zero,
grpc ignores the report.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from kuberesolver.core.extras import client_extra

__all__ = ["LOAD_REPORT_KEY", "load_report"]

LOAD_REPORT_KEY: Final = "endpoint-load-metrics-bin"


def load_report(
    *,
    cpu_utilization: float | None = None,
    application_utilization: float | None = None,
    rps: float,
    eps: float = 0.0,
    utilization: Mapping[str, float] | None = None,
) -> tuple[str, bytes]:
    """A ``(key, value)`` trailing-metadata pair carrying one ORCA load report.

    ``application_utilization`` (if given) is what grpc uses, else
    ``cpu_utilization``; ``rps`` is the request rate, ``eps`` the error rate.
    """
    with client_extra():
        from xds.data.orca.v3 import orca_load_report_pb2

    if cpu_utilization is None and application_utilization is None:
        raise ValueError("report cpu_utilization or application_utilization")
    if rps < 0 or eps < 0:
        raise ValueError("rps and eps must not be negative")
    report = orca_load_report_pb2.OrcaLoadReport(rps_fractional=rps, eps=eps)
    if cpu_utilization is not None:
        report.cpu_utilization = cpu_utilization
    if application_utilization is not None:
        report.application_utilization = application_utilization
    for name, value in (utilization or {}).items():
        report.utilization[name] = value
    return LOAD_REPORT_KEY, bytes(report.SerializeToString())
