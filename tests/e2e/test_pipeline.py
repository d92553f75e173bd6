"""The whole pipeline on the real control plane.

Pods (real gRPC servers on their pod IPs) -> endpointslice controller ->
operator (its own RBAC) -> ConfigMap -> projector (the client's own
ServiceAccount, get/watch on one ConfigMap) -> files in kubelet's layout ->
kuberesolver channel -> RPCs.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from kubernetes import client

import kuberesolver
import kuberesolver.aio
from demo.backends import METHOD, Backend
from testenv import ControlPlane
from testenv.kube import apply_object, documents, service_account_token
from testenv.netns import pod_ip
from testenv.operator_process import OperatorProcess
from testenv.wait import until, until_async
from testenv.workloads import create_node, create_pod, create_service, set_pod_status

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
PORT = 50051


class World:
    """One namespace's Service "greeter" with Pods that are real gRPC servers."""

    def __init__(self, api: client.ApiClient, namespace: str, first_ip: int) -> None:
        self.api = api
        self.namespace = namespace
        self.first_ip = first_ip
        self.backends: dict[str, Backend] = {}
        create_node(api, "node-e2e", zone="zone-a")
        create_service(api, namespace, "greeter")

    def add_pod(self, i: int) -> str:
        name = f"greeter-{i}"
        ip = pod_ip(self.first_ip + i)
        self.backends[name] = Backend(name, ip, PORT)
        create_pod(self.api, self.namespace, name, ip, "node-e2e", {"app": "greeter"})
        return name

    def delete_pod(self, name: str) -> None:
        client.CoreV1Api(self.api).delete_namespaced_pod(
            name, self.namespace, grace_period_seconds=0
        )

    def stop(self) -> None:
        for b in self.backends.values():
            b.stop()


_worlds = itertools.count()


@pytest.fixture
def world(admin_api: client.ApiClient, namespace: str) -> Iterator[World]:
    # Each test gets its own slice of the pod range so that servers never clash.
    w = World(admin_api, namespace, first_ip=100 + 10 * next(_worlds))
    yield w
    w.stop()


@pytest.fixture
def operator(operator_kubeconfig: Path) -> Iterator[OperatorProcess]:
    op = OperatorProcess(operator_kubeconfig, name="e2e").start()
    yield op
    op.stop()


@pytest.fixture
def mount(
    control_plane: ControlPlane, admin_api: client.ApiClient, namespace: str, tmp_path: Path
) -> Iterator[Path]:
    """The projector writing ConfigMap "greeter" into <root>/greeter.<ns>, as the client's SA."""
    for doc in documents(ROOT / "manifests/examples/projector-sidecar.yaml"):
        if doc["kind"] != "Pod":
            apply_object(admin_api, in_namespace(doc, namespace))
    token = service_account_token(admin_api, namespace, "greeter-client")
    kubeconfig = control_plane.token_kubeconfig(f"client-{namespace}", token, namespace)
    root = tmp_path / "kuberesolver"
    log = tmp_path / "projector.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kuberesolver.projector",
                f"--namespace={namespace}",
                "--configmap=greeter",
                f"--dir={root / f'greeter.{namespace}'}",
            ],
            env={**os.environ, "KUBECONFIG": str(kubeconfig)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    yield root
    proc.terminate()
    assert proc.wait(15) == 0, log.read_text()


def in_namespace(doc: dict[str, Any], namespace: str) -> dict[str, Any]:
    """An example manifest moved from namespace "demo" to the test's own."""
    doc = {**doc, "metadata": {**doc["metadata"], "namespace": namespace}}
    if "subjects" in doc:
        doc["subjects"] = [{**s, "namespace": namespace} for s in doc["subjects"]]
    return doc


def create_grpctarget(api: client.ApiClient, namespace: str) -> None:
    gt = next(
        d for d in documents(ROOT / "manifests/examples/greeter.yaml") if d["kind"] == "GrpcTarget"
    )
    apply_object(api, in_namespace(gt, namespace))


def spread(channel: grpc.Channel, calls: int) -> collections.Counter[str]:
    say_hello = channel.unary_unary(METHOD)
    return collections.Counter(say_hello(b"", timeout=5).decode() for _ in range(calls))


def test_client_follows_scale_up_readiness_and_scale_to_zero(
    world: World, operator: OperatorProcess, mount: Path, namespace: str
) -> None:
    pods = [world.add_pod(i) for i in range(1, 4)]
    create_grpctarget(world.api, namespace)
    snapshot = mount / f"greeter.{namespace}" / "endpoints.json"
    until(snapshot.exists, timeout_s=60, message="the projected snapshot")

    target = f"kubernetes:///greeter.{namespace}:grpc"
    with kuberesolver.insecure_channel(target, snapshot_dir=mount) as channel:
        until(
            lambda: set(spread(channel, 30)) == set(pods),
            timeout_s=60,
            message="all 3 pods to get traffic",
        )

        # Scale up: the new pod gets traffic, with no new channel.
        pods.append(world.add_pod(4))
        until(
            lambda: set(spread(channel, 40)) == set(pods),
            timeout_s=60,
            message="the 4th pod to get traffic",
        )

        # A pod that stops being ready is drained.
        set_pod_status(world.api, namespace, "greeter-2", ready=False)
        until(
            lambda: "greeter-2" not in spread(channel, 40),
            timeout_s=60,
            message="greeter-2 drained",
        )
        assert set(spread(channel, 40)) == {"greeter-1", "greeter-3", "greeter-4"}

        # Scale to zero: calls fail fast with UNAVAILABLE...
        for name in pods:
            world.delete_pod(name)

        def fails_fast() -> bool:
            try:
                spread(channel, 1)
            except grpc.RpcError as exc:
                return bool(exc.code() == grpc.StatusCode.UNAVAILABLE)
            return False

        until(fails_fast, timeout_s=60, message="calls to fail with UNAVAILABLE")

        # ...and recover when a pod comes back.
        world.backends.pop("greeter-1").stop()
        world.add_pod(1)
        until(lambda: not fails_fast(), timeout_s=60, message="traffic after scale from zero")
        assert set(spread(channel, 10)) == {"greeter-1"}


async def test_aio_client_follows_scale_up(
    world: World, operator: OperatorProcess, mount: Path, namespace: str
) -> None:
    world.add_pod(1)
    create_grpctarget(world.api, namespace)
    snapshot = mount / f"greeter.{namespace}" / "endpoints.json"
    until(snapshot.exists, timeout_s=60, message="the projected snapshot")

    async with kuberesolver.aio.insecure_channel(
        f"kubernetes:///greeter.{namespace}:grpc", snapshot_dir=mount
    ) as channel:
        say_hello = channel.unary_unary(METHOD)
        assert await say_hello(b"", timeout=5) == b"greeter-1"
        world.add_pod(2)
        seen: set[bytes] = set()

        async def both_answered() -> bool:
            seen.add(await say_hello(b"", timeout=5))
            assert seen == {b"greeter-1", b"greeter-2"}, f"only {sorted(seen)} answered"
            return True

        await until_async(both_answered, timeout_s=60, interval_s=0, message="greeter-2 to answer")


def test_configmap_is_owned_and_removed_with_its_grpctarget(
    world: World, operator: OperatorProcess, namespace: str
) -> None:
    world.add_pod(1)
    create_grpctarget(world.api, namespace)
    core = client.CoreV1Api(world.api)
    until(
        lambda: _exists(lambda: core.read_namespaced_config_map("greeter", namespace)),
        timeout_s=60,
        message="the ConfigMap",
    )
    client.CustomObjectsApi(world.api).delete_namespaced_custom_object(
        "kuberesolver.io", "v1alpha1", namespace, "grpctargets", "greeter"
    )
    until(
        lambda: not _exists(lambda: core.read_namespaced_config_map("greeter", namespace)),
        timeout_s=60,
        message="the garbage collector to remove the ConfigMap",
    )


def _exists(read: Callable[[], object]) -> bool:
    with contextlib.suppress(client.ApiException):
        read()
        return True
    return False
