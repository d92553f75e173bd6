"""`make demo`: a local control plane, the operator, real gRPC backends and a client.

1. Start etcd, kube-apiserver (RBAC on) and kube-controller-manager on 127.0.0.1,
   inside a private network namespace where the pod range 10.244.0.0/16 is local.
2. Apply the CRDs and the operator's RBAC; run the operator as its ServiceAccount.
3. Create a Service "greeter" with 3 Pods, each backed by a real gRPC server on
   its pod IP, and a GrpcTarget for it.
4. Run the projector (kubelet's stand-in, as the client's ServiceAccount) that
   writes the ConfigMap into a directory, and a kuberesolver client on it.
5. Scale up, mark a pod not ready, and show the client following each change.
"""

from __future__ import annotations

import collections
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import grpc
from kubernetes import client

import kuberesolver
import kuberesolver.core.snapshot
from demo.backends import METHOD, Backend
from testenv import ControlPlane, ensure_binaries
from testenv.kube import (
    api_client,
    apply,
    apply_object,
    documents,
    service_account_token,
    table,
)
from testenv.netns import enter_private_network, pod_ip
from testenv.operator_process import OperatorProcess
from testenv.wait import until
from testenv.workloads import create_node, create_pod, create_service, set_pod_status

ROOT = Path(__file__).resolve().parent.parent
NS = "demo"
GT_PATH = f"/apis/kuberesolver.io/v1alpha1/namespaces/{NS}/grpctargets"


def say(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m", flush=True)


@contextlib.contextmanager
def background(name: str, argv: list[str], env: dict[str, str], log: Path) -> Iterator[None]:
    """Run a child process for the duration of the block; stop it cleanly after."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, env={**os.environ, **env}, stdout=out, stderr=out)
        try:
            yield
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    if proc.returncode not in (0, -15):
        print(f"{name} exited with {proc.returncode}; log: {log}", file=sys.stderr)


def spread(channel: grpc.Channel, calls: int = 60) -> dict[str, int]:
    say_hello = channel.unary_unary(METHOD)
    counts: collections.Counter[str] = collections.Counter()
    for _ in range(calls):
        counts[say_hello(b"", timeout=5).decode()] += 1
    return dict(sorted(counts.items()))


def show_spread(channel: grpc.Channel) -> dict[str, int]:
    counts = spread(channel)
    for pod, n in counts.items():
        print(f"  {pod:<12} {'#' * n} {n}")
    return counts


def main() -> int:
    ensure_binaries()
    enter_private_network()
    work = Path(tempfile.mkdtemp(prefix="kuberesolver-demo-"))
    mount = work / "mount"
    backends: dict[str, Backend] = {}

    say("Starting a local control plane (etcd, kube-apiserver with RBAC, controller-manager)")
    t0 = time.monotonic()
    with ControlPlane(workdir=work / "controlplane") as cp:
        print(f"  ready in {time.monotonic() - t0:.1f} s at {cp.server}")
        admin = api_client(cp.admin_kubeconfig)
        apply(admin, ROOT / "crds", ROOT / "manifests/namespace.yaml", ROOT / "manifests/rbac.yaml")
        core = client.CoreV1Api(admin)
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NS)))
        until(lambda: _exists(core, NS), timeout_s=60, message="the default ServiceAccount")
        for doc in documents(ROOT / "manifests/examples/projector-sidecar.yaml"):
            if doc["kind"] != "Pod":
                apply_object(admin, doc)

        say("3 pods of Service greeter, each a real gRPC server on its pod IP")
        create_node(admin, "node-a", zone="zone-a")
        create_service(admin, NS, "greeter")
        for i in range(1, 4):
            add_pod(admin, backends, i)

        say("Running the operator as its own ServiceAccount (manifests/rbac.yaml)")
        op_token = service_account_token(admin, "kuberesolver-system", "kuberesolver-operator")
        op_kubeconfig = cp.token_kubeconfig("operator", op_token, "kuberesolver-system")
        client_token = service_account_token(admin, NS, "greeter-client")
        client_kubeconfig = cp.token_kubeconfig("greeter-client", client_token, NS)
        projector_argv = [
            sys.executable, "-m", "kuberesolver.projector", f"--namespace={NS}",
            "--configmap=greeter", f"--dir={mount / 'greeter.demo'}",
        ]  # fmt: skip
        with (
            OperatorProcess(op_kubeconfig, name="demo") as operator,
            background("projector", projector_argv, {"KUBECONFIG": str(client_kubeconfig)},
                       work / "projector.log"),
        ):  # fmt: skip
            print(f"  live at {operator.liveness_url}; log: {operator.log_path}")
            say("kubectl apply -f manifests/examples/greeter.yaml  (the GrpcTarget)")
            gt = next(d for d in documents(ROOT / "manifests/examples/greeter.yaml")
                      if d["kind"] == "GrpcTarget")  # fmt: skip
            apply_object(admin, gt)
            until(lambda: _ready(admin) == 3, timeout_s=60, message="the GrpcTarget to be Ready")
            print(table(admin, GT_PATH))

            endpoints = mount / "greeter.demo" / "endpoints.json"
            until(endpoints.exists, timeout_s=60, message="the projector to write the snapshot")
            say(f"The snapshot the client mounts ({endpoints.relative_to(work)}):")
            snap = kuberesolver.core.snapshot.load(endpoints)
            for ep in snap.endpoints:
                print(f"  {ep.hostport:<20} ready={ep.ready} pod={ep.pod}")

            target = "kubernetes:///greeter.demo:grpc"
            say(f'kuberesolver.insecure_channel("{target}"): 60 calls')
            with kuberesolver.insecure_channel(target, snapshot_dir=mount) as channel:
                first = show_spread(channel)
                assert len(first) == 3, first

                say("Scale up: a 4th pod starts and becomes ready")
                add_pod(admin, backends, 4)
                until(
                    lambda: len(spread(channel, 20)) == 4,
                    timeout_s=60,
                    message="the new pod to get traffic",
                )
                print(table(admin, GT_PATH))
                show_spread(channel)

                say("greeter-2 fails its readiness probe")
                set_pod_status(admin, NS, "greeter-2", ready=False)
                until(
                    lambda: "greeter-2" not in spread(channel, 20),
                    timeout_s=60,
                    message="greeter-2 to be drained",
                )
                print(table(admin, GT_PATH))
                show_spread(channel)

            cm = core.read_namespaced_config_map("greeter", NS)
            say("The ConfigMap the operator wrote (service-config.json):")
            service_config = (cm.data or {}).get("service-config.json", "")
            print("  " + service_config.strip().replace("\n", "\n  "))

        for b in backends.values():
            b.stop()
        admin.close()  # type: ignore[no-untyped-call]
    say("Done: every change reached the client with no restart. Control plane stopped.")
    return 0


def add_pod(admin: client.ApiClient, backends: dict[str, Backend], i: int) -> None:
    name = f"greeter-{i}"
    backends[name] = Backend(name, pod_ip(i), 50051)
    create_pod(admin, NS, name, pod_ip(i), "node-a", {"app": "greeter"})
    print(f"  pod {name:<10} ip {pod_ip(i)}  ready")


def _exists(core: client.CoreV1Api, ns: str) -> bool:
    try:
        core.read_namespaced_service_account("default", ns)
    except client.ApiException:
        return False
    return True


def _ready(admin: client.ApiClient) -> int:
    gt = cast(
        dict[str, Any],
        client.CustomObjectsApi(admin).get_namespaced_custom_object(
            "kuberesolver.io", "v1alpha1", NS, "grpctargets", "greeter"
        ),
    )
    return int(gt.get("status", {}).get("readyEndpoints") or 0)


if __name__ == "__main__":
    sys.exit(main())
