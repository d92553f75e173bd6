"""Direct mode on the real control plane, the client under exactly the shipped Role.

The client is a ServiceAccount bound to manifests/examples/direct-mode-rbac.yaml,
its token in a file (rotated on disk in one test); the pods are real gRPC
servers on their pod IPs (see world.py and conftest.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import grpc
import pytest
from kubernetes import client

import kuberesolver
import kuberesolver.aio
from kuberesolver.direct import ApiWatcher
from testenv import ControlPlane
from testenv.netns import pod_ip
from testenv.wait import until, until_async
from testenv.workloads import create_service
from tests.integration.direct.world import (
    METHOD,
    PORT,
    ROOT,
    Pods,
    bound_token,
    reached,
    ready_addresses,
)

pytestmark = pytest.mark.integration


def api_watcher(channel: grpc.Channel) -> ApiWatcher:
    watcher = channel.lease._wd.watcher  # type: ignore[attr-defined]
    assert isinstance(watcher, ApiWatcher)
    return watcher


def test_250_pods_in_3_slices_are_all_reached(
    builder: kuberesolver.Builder, pods: Pods, admin_api: client.ApiClient, namespace: str
) -> None:
    pods.start(250)
    ips = {pods.add(i) for i in range(250)}
    until(
        lambda: ready_addresses(admin_api, namespace) == (3, 250),
        timeout_s=120,
        message="250 ready endpoints in 3 slices",
    )
    with kuberesolver.insecure_channel(f"kubernetes:///greeter.{namespace}:grpc") as channel:
        assert {e.address for e in channel.snapshot.endpoints} == ips  # type: ignore[attr-defined]
        seen: set[str] = set()
        until(
            lambda: seen.update(reached(channel, 250)) or seen == ips,
            timeout_s=60,
            message="every pod to be reached",
        )


def refused(channel: grpc.Channel) -> bool:
    """True once a call fails as grpc fails a target without endpoints."""
    try:
        channel.unary_unary(METHOD)(b"", timeout=2)
    except grpc.RpcError as failed:
        code = failed.code()  # type: ignore[attr-defined]
        assert code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED), code
        return True
    return False


def test_scale_to_zero_and_back(builder: kuberesolver.Builder, pods: Pods, namespace: str) -> None:
    pods.start(8)
    first = {pods.add(i) for i in range(2)}
    pods.wait_ready(2)
    with kuberesolver.insecure_channel(f"kubernetes:///greeter.{namespace}:grpc") as channel:
        until(lambda: reached(channel, 20) == first, timeout_s=60, message="both pods reached")
        for i in range(2):
            pods.delete(i)
        until(lambda: channel.snapshot.endpoints == (), timeout_s=60, message="no endpoints")  # type: ignore[attr-defined]
        # The snapshot is empty before grpc's xDS client has applied the empty
        # assignment: wait for the first refused call, never a call that still lands.
        until(lambda: refused(channel), timeout_s=30, message="calls refused with no endpoints")
        back = pods.add(7)
        until(lambda: reached(channel, 5) == {back}, timeout_s=60, message="the new pod reached")


def test_a_deleted_slice_takes_its_endpoints_along(
    builder: kuberesolver.Builder, admin_api: client.ApiClient, namespace: str
) -> None:
    # A Service without selector: its slices are ours, and nothing recreates a deleted one.
    create_service(admin_api, namespace, "greeter", selector={})
    body = {"spec": {"selector": None}}
    client.CoreV1Api(admin_api).patch_namespaced_service("greeter", namespace, body)
    discovery = client.DiscoveryV1Api(admin_api)
    for name, ip in (("greeter-a", pod_ip(1901)), ("greeter-b", pod_ip(1902))):
        discovery.create_namespaced_endpoint_slice(
            namespace,
            {
                "metadata": {
                    "name": name,
                    "labels": {
                        "kubernetes.io/service-name": "greeter",
                        "endpointslice.kubernetes.io/managed-by": "tests.kuberesolver.io",
                    },
                },
                "addressType": "IPv4",
                "ports": [{"name": "grpc", "port": PORT, "protocol": "TCP"}],
                "endpoints": [{"addresses": [ip], "conditions": {"ready": None}}],
            },
        )
    with kuberesolver.insecure_channel(f"kubernetes:///greeter.{namespace}:grpc") as channel:

        def addresses() -> set[str]:
            return {e.address for e in channel.snapshot.endpoints}  # type: ignore[attr-defined]

        assert addresses() == {pod_ip(1901), pod_ip(1902)}
        discovery.delete_namespaced_endpoint_slice("greeter-b", namespace)
        until(
            lambda: addresses() == {pod_ip(1901)}, timeout_s=60, message="slice b's endpoint gone"
        )


def test_an_apiserver_restart_mid_watch_keeps_the_endpoints_and_is_followed(
    builder: kuberesolver.Builder,
    pods: Pods,
    admin_api: client.ApiClient,
    namespace: str,
    control_plane: ControlPlane,
) -> None:
    pods.start(8)
    first = {pods.add(i) for i in range(2)}
    pods.wait_ready(2)
    with kuberesolver.insecure_channel(f"kubernetes:///greeter.{namespace}:grpc") as channel:
        watcher = api_watcher(channel)
        until(lambda: reached(channel, 20) == first, timeout_s=60, message="both pods reached")
        # The reflector's own behaviours (410 relist, resume) are tested once, in
        # tests/integration/test_reflector.py; here: what the channel does meanwhile.
        stop = threading.Event()
        failures: list[BaseException] = []

        def call_through_restart() -> None:
            hello = channel.unary_unary(METHOD)
            while not stop.is_set():
                try:
                    hello(b"", timeout=5)
                except grpc.RpcError as exc:
                    failures.append(exc)
                stop.wait(0.01)  # pacing, not a condition

        caller = threading.Thread(target=call_through_restart)
        caller.start()
        try:
            control_plane.restart_apiserver()
        finally:
            stop.set()
            caller.join()
        assert failures == []  # the last good endpoints served while the API was down
        third = pods.add(2)
        until(
            lambda: third in reached(channel, 30),
            timeout_s=60,
            message="the pod added after the restart reached",
        )
        assert watcher.alive


def test_a_token_rotated_on_disk_is_used(
    builder: kuberesolver.Builder,
    pods: Pods,
    admin_api: client.ApiClient,
    namespace: str,
    control_plane: ControlPlane,
    token_file: Path,
) -> None:
    core = client.CoreV1Api(admin_api)
    for name in ("token-a", "token-b"):
        core.create_namespaced_secret(namespace, {"metadata": {"name": name}})
    token_file.write_text(bound_token(admin_api, namespace, "token-a"))
    pods.start(2)
    first = pods.add(0)
    pods.wait_ready(1)
    with kuberesolver.insecure_channel(f"kubernetes:///greeter.{namespace}:grpc") as channel:
        watcher = api_watcher(channel)
        until(lambda: reached(channel, 5) == {first}, timeout_s=60, message="the pod reached")
        # Rotate as kubelet does (write a new file, rename over), then revoke the old token.
        fresh = token_file.with_suffix(".new")
        fresh.write_text(bound_token(admin_api, namespace, "token-b"))
        fresh.replace(token_file)
        core.delete_namespaced_secret("token-a", namespace)
        control_plane.restart_apiserver()  # every connection, the watch's too, starts again
        second = pods.add(1)
        until(
            lambda: second in reached(channel, 20),
            timeout_s=60,
            message="the pod added after the rotation reached",
        )
        assert watcher.client.token_file.reads >= 2  # type: ignore[attr-defined]


SEED_EXAMPLE = """
import kuberesolver
kuberesolver.register_in_cluster()
with kuberesolver.insecure_channel("kubernetes:///greeter.{namespace}:grpc") as ch:
    print(ch.unary_unary("/demo.Greeter/SayHello")(b"", timeout=10).decode())
"""


def test_the_seed_example_runs_in_cluster_with_only_the_names_changed(
    pods: Pods,
    namespace: str,
    control_plane: ControlPlane,
    token_file: Path,
    tmp_path: Path,
) -> None:
    """register_in_cluster() as in a pod: the ServiceAccount files at their usual place.

    The process gets a private mount namespace whose /run (where /var/run
    points) holds the token, CA and namespace files, and the in-cluster
    variables that kubelet sets.
    """
    pods.start(1)
    ip = pods.add(0)
    pods.wait_ready(1)
    secrets = tmp_path / "serviceaccount"
    secrets.mkdir()
    (secrets / "token").write_text(token_file.read_text())
    (secrets / "ca.crt").write_bytes(control_plane.ca.cert_path.read_bytes())
    (secrets / "namespace").write_text(namespace)
    script = tmp_path / "seed.py"
    script.write_text(SEED_EXAMPLE.format(namespace=namespace))
    sa_dir = "/var/run/secrets/kubernetes.io/serviceaccount"
    shell = (
        f"mount -t tmpfs none $(readlink -f /var/run) && mkdir -p {sa_dir} && "
        f"cp {secrets}/* {sa_dir}/ && exec {sys.executable} {script}"
    )
    env = {
        **os.environ,
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": str(control_plane.apiserver_port),
    }
    out = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", shell],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ip


async def test_an_aio_channel_follows_the_api_too(
    builder: kuberesolver.Builder, pods: Pods, namespace: str
) -> None:
    pods.start(2)
    first = pods.add(0)
    pods.wait_ready(1)
    target = f"kubernetes:///greeter.{namespace}:grpc"
    async with kuberesolver.aio.insecure_channel(target, source="api") as channel:
        hello = channel.unary_unary(METHOD)
        assert (await hello(b"", timeout=10)).decode() == first
        second = pods.add(1)
        seen: set[str] = set()

        async def both() -> bool:
            seen.add((await hello(b"", timeout=5)).decode())
            return seen == {first, second}

        await until_async(both, timeout_s=60, message="the second pod reached")
