"""The operator serves xDS: real replicas under manifests/rbac.yaml, real grpcio
and grpc-go ``xds://`` clients in their own processes, real gRPC backends on pod IPs.

Every replica serves from its own watches: a client of the standby follows slice changes
while the standby writes nothing, and still does after the leader is killed and before
anyone holds the Lease again (a failover costs xDS clients nothing).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kubernetes import client

from testenv.controlplane import free_port
from testenv.grpc_go import xds_client
from testenv.netns import pod_ip
from testenv.operator_process import OperatorProcess
from testenv.wait import until
from tests.client._support import Backend
from tests.integration.operator.helpers import (
    configmap_writes,
    create_target,
    ep,
    make_slice,
    selectorless_service,
    snapshot_of,
    wait_published,
)
from tests.integration.operator.test_ha import LEASE, leader_of, lease_holder
from tests.xds.conftest import AUTHORITY, Client, write_bootstrap

pytestmark = pytest.mark.integration

PORT = 50051  # the port of helpers.make_slice's slices


def xds_env(port: int) -> dict[str, str]:
    return {
        "KUBERESOLVER_XDS_ADDRESS": f"127.0.0.1:{port}",
        "KUBERESOLVER_XDS_AUTHORITY": AUTHORITY,
        # No takeover within the test: what the standby serves, it serves without leading.
        "KUBERESOLVER_LEASE_DURATION_S": "120",
    }


@pytest.fixture
def backends() -> Iterator[dict[str, Backend]]:
    started = {f"b{i}": Backend(pod_ip(190 + i), f"b{i}", port=PORT) for i in (1, 2, 3)}
    yield started
    for b in started.values():
        b.stop()


@pytest.fixture
def clients() -> Iterator[Callable[..., Client]]:
    started: list[Client] = []

    def make(bootstrap: Path, target: str, command: tuple[str, ...] = ()) -> Client:
        c = Client(bootstrap, [target], command)
        started.append(c)
        return c

    yield make
    for c in started:
        c.close()


def reaches(c: Client, name: str) -> bool:
    """Whether ``c``'s calls all reach backend ``name`` now."""
    got = c.calls(10)
    return bool(got["counts"] == {name: 10})


def _free_the_lease(api: client.ApiClient) -> None:
    """Delete the Lease the killed leader holds for 120 s, so the next test's replica leads."""
    namespace, name = LEASE
    try:
        client.CoordinationV1Api(api).delete_namespaced_lease(name, namespace)
    except client.ApiException as exc:
        if exc.status != 404:
            raise


def test_every_replica_serves_xds_and_a_leader_kill_costs_its_clients_nothing(
    request: pytest.FixtureRequest,
    admin_api: client.ApiClient,
    namespace: str,
    operator_factory: Callable[..., OperatorProcess],
    backends: dict[str, Backend],
    clients: Callable[..., Client],
    tmp_path: Path,
) -> None:
    ports = [free_port(), free_port()]
    replicas = [operator_factory(xds_env(p), name="x") for p in ports]
    selectorless_service(admin_api, namespace, "svc")
    make_slice(admin_api, namespace, "svc", "svc-1", [ep(pod_ip(191), ready=True)])
    create_target(admin_api, namespace, "t", {"service": "svc", "port": "grpc"})
    wait_published(admin_api, namespace, "t", {pod_ip(191)})
    leader = leader_of(admin_api, replicas)
    standby = replicas[1 - replicas.index(leader)]
    port_of = {op.identity: p for op, p in zip(replicas, ports, strict=True)}
    target = f"xds://{AUTHORITY}/t.{namespace}"
    boot = {
        op.identity: write_bootstrap(
            tmp_path / f"{op.name}.json", f"127.0.0.1:{port_of[op.identity]}"
        )
        for op in replicas
    }
    of_leader = clients(boot[leader.identity], target)
    of_standby = clients(boot[standby.identity], target)
    go_of_standby = clients(boot[standby.identity], target, (str(xds_client()),))
    everyone = (of_leader, of_standby, go_of_standby)
    for c in everyone:
        until(lambda c=c: reaches(c, "b1"), timeout_s=60, message="b1 over xDS")

    make_slice(admin_api, namespace, "svc", "svc-1", [ep(pod_ip(192), ready=True)])
    for c in everyone:
        until(lambda c=c: reaches(c, "b2"), timeout_s=30, message="b2 after the slice change")
    assert configmap_writes(standby) == 0  # it served the change from its own watches

    leader.kill()  # SIGKILL: the Lease stays held by the dead leader
    request.addfinalizer(lambda: _free_the_lease(admin_api))  # for the tests after this one
    make_slice(admin_api, namespace, "svc", "svc-1", [ep(pod_ip(193), ready=True)])
    for c in (of_standby, go_of_standby):
        until(lambda c=c: reaches(c, "b3"), timeout_s=30, message="b3 from the standby")
    assert lease_holder(admin_api) == leader.identity  # no one leads: no one wrote
    snapshot = snapshot_of(admin_api, namespace, "t")
    assert snapshot is not None
    assert [e.address for e in snapshot.endpoints] == [pod_ip(192)]
    assert configmap_writes(standby) == 0

    # A replica started now lists the GrpcTargets, and answers once kopf has shown them.
    late_port = free_port()
    late = operator_factory(xds_env(late_port), name="late")
    of_late = clients(write_bootstrap(tmp_path / "late.json", f"127.0.0.1:{late_port}"), target)
    until(lambda: reaches(of_late, "b3"), timeout_s=60, message="b3 from the late replica")
    # In a whole-suite run other tests' GrpcTargets (other namespaces) are listed too.
    served = until(
        lambda: re.search(r"xDS: serving (\d+) GrpcTargets", late.log_text()),
        timeout_s=10,
        message="the late replica's first answer",
    )
    assert int(served.group(1)) >= 1
    assert "not seen after" not in late.log_text()
    assert "listing GrpcTargets failed" not in late.log_text()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"KUBERESOLVER_XDS_AUTH": "token"}, "KUBERESOLVER_XDS_AUTH=token needs TLS"),
        ({"KUBERESOLVER_XDS_CERT_FILE": "/nonexistent/tls.crt",
          "KUBERESOLVER_XDS_KEY_FILE": "/nonexistent/tls.key"}, "cannot serve xDS"),
    ],
)  # fmt: skip
def test_a_bad_xds_setting_stops_the_operator_with_its_reason(
    operator_factory: Callable[..., OperatorProcess], env: dict[str, str], message: str
) -> None:
    with pytest.raises(RuntimeError, match="exited") as failed:
        operator_factory({"KUBERESOLVER_XDS_ADDRESS": f"127.0.0.1:{free_port()}", **env})
    assert message in str(failed.value)
