"""What ``/readyz`` reports, as pure logic, and its setting."""

from __future__ import annotations

from kuberesolver.operator.logic.readiness import Readiness, unmet
from kuberesolver.operator.settings import Settings


def test_ready_when_every_list_is_in_and_nothing_else_is_asked() -> None:
    assert unmet(Readiness(listed=(("services", True), ("endpointslices", True)))) == []


def test_each_unmet_condition_is_one_line() -> None:
    reading = Readiness(
        listed=(("services", False), ("endpointslices", True), ("pods", False)),
        xds_listening=False,
        holds_lease=True,
        leading_started=False,
    )
    assert unmet(reading) == [
        "services: not listed yet",
        "pods: not listed yet",
        "xds: the ADS server does not listen yet",
        "leader: holds the Lease, its target loops have not started",
    ]


def test_a_standby_replica_is_ready_without_the_lease() -> None:
    reading = Readiness(listed=(("services", True),), holds_lease=False, leading_started=False)
    assert unmet(reading) == []


def test_the_ready_port_is_off_by_default_and_read_from_the_environment() -> None:
    assert Settings.resolve(environ={}).ready_port == 0
    assert Settings.resolve(environ={"KUBERESOLVER_READY_PORT": "8081"}).ready_port == 8081
