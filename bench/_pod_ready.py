"""Shared by the "pod marked Ready -> first RPC" benchmarks (direct_latency, xds_latency).

Not a benchmark itself (make bench skips ``_*`` files). One Service ``greeter``
in namespace ``bench``, its pods' IPs served by one gRPC server in a private
network namespace, clients in their own processes; each round adds a pod (not
ready), marks it Ready and times, on the backends' clock, the first call of
each client that reaches it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent import futures
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc
from _common import percentile
from kubernetes import client

from testenv import ControlPlane, ensure_binaries
from testenv.gobuild import cached_go_binary
from testenv.kube import apply, apply_object, create_namespace, documents, service_account_token
from testenv.netns import enter_private_network, pod_ip
from testenv.wait import until
from testenv.workloads import create_node, create_pod, create_service, set_pod_status

ROOT = Path(__file__).resolve().parent.parent
GO_MODULE = ROOT / "bench/go/kuberesolver-client"
GO_VERSION = "v6.0.1"  # github.com/sercand/kuberesolver/v6, as pinned in GO_MODULE/go.mod
NS = "bench"
PORT = 50051
NODE = "node-bench"
LABELS = {"app": "greeter"}


def go_client() -> Path:
    """Go's sercand/kuberesolver client binary, built once into the testenv cache."""
    return cached_go_binary(
        GO_MODULE,
        f"go-kuberesolver-{GO_VERSION}",
        "kuberesolver-client",
        f"Go's kuberesolver {GO_VERSION}",
    )


class Backends:
    """One gRPC server on many pod IPs; records when each client first reached each IP.

    ``demo.Greeter/SayHello`` calls name their client in metadata ``x-client``;
    grpc-go-xds's ``kr.test.Echo/Unary`` calls carry none and count as ``grpc_go_xds``.
    """

    def __init__(self, ips: list[str]) -> None:
        self.first: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        greeter = grpc.method_handlers_generic_handler(
            "demo.Greeter", {"SayHello": grpc.unary_unary_rpc_method_handler(self._hello)}
        )
        echo = grpc.method_handlers_generic_handler(
            "kr.test.Echo", {"Unary": grpc.unary_unary_rpc_method_handler(self._echo)}
        )
        self.server.add_generic_rpc_handlers((greeter, echo))
        for ip in ips:
            if self.server.add_insecure_port(f"{ip}:{PORT}") == 0:
                raise OSError(f"cannot listen on {ip}:{PORT}")
        self.server.start()

    def _record(self, who: str, context: grpc.ServicerContext) -> None:
        now = time.monotonic()
        key = (who, context.peer().split(":")[1])
        with self._lock:
            self.first.setdefault(key, now)

    def _hello(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self._record(str(dict(context.invocation_metadata()).get("x-client", "?")), context)
        return b"ok"

    def _echo(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self._record("grpc_go_xds", context)
        return b"ok|"

    def reached(self, who: str, ip: str) -> float | None:
        with self._lock:
            return self.first.get((who, ip))

    def wait_reached(self, clients: Iterable[str], ip: str, what: str) -> None:
        """Until every client in ``clients`` has reached ``ip``."""
        until(
            lambda: all(self.reached(w, ip) is not None for w in clients),
            timeout_s=60,
            message=f"every client to reach {what}",
        )


def prepare(rounds: int, first_ip: int) -> tuple[list[str], Backends]:
    """Before the control plane: Go's kuberesolver built, the control plane's binaries
    found, a private network namespace entered; then ``rounds + 2`` pod IPs from
    ``pod_ip(first_ip)`` on, and the backends serving them."""
    go_client()
    ensure_binaries()
    enter_private_network()
    ips = [pod_ip(first_ip + i) for i in range(rounds + 2)]
    return ips, Backends(ips)


def in_namespace(doc: dict[str, Any]) -> dict[str, Any]:
    doc = {**doc, "metadata": {**doc["metadata"], "namespace": NS}}
    if "subjects" in doc:
        doc["subjects"] = [{**s, "namespace": NS} for s in doc["subjects"]]
    return doc


def slice_has(api: client.ApiClient, ip: str, ready: bool | None) -> bool:
    slices = client.DiscoveryV1Api(api).list_namespaced_endpoint_slice(
        NS, label_selector="kubernetes.io/service-name=greeter"
    )
    for s in slices.items:
        for e in s.endpoints or []:
            if ip in e.addresses:
                return ready is None or bool(e.conditions and e.conditions.ready) == ready
    return False


def start(argv: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )


def stop(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    """Terminate every process; kill one that has not exited 10 s later."""
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()


def install_greeter(admin: client.ApiClient, base_ip: str) -> None:
    """The CRD and the operator's RBAC; namespace ``bench`` with the examples' RBAC and
    GrpcTarget; the Service ``greeter`` and its first (ready) pod on ``base_ip``."""
    apply(admin, ROOT / "crds", ROOT / "manifests/namespace.yaml", ROOT / "manifests/rbac.yaml")
    create_namespace(admin, NS)  # and its default ServiceAccount, which Pods need
    for path in ("direct-mode-rbac.yaml", "projector-sidecar.yaml", "greeter.yaml"):
        for doc in documents(ROOT / "manifests/examples" / path):
            # The bench makes its own Namespace, Service and Pods (the example's are a user's).
            if doc["kind"] not in ("Namespace", "Pod", "Service"):
                apply_object(admin, in_namespace(doc))
    create_node(admin, NODE)
    create_service(admin, NS, "greeter")
    create_pod(admin, NS, "greeter-base", base_ip, NODE, LABELS)
    until(lambda: slice_has(admin, base_ip, True), timeout_s=60, message="the base pod in a slice")


def start_projector(
    cp: ControlPlane, admin: client.ApiClient, procs: list[subprocess.Popen[bytes]]
) -> Path:
    """The projector of GrpcTarget ``greeter`` as its ServiceAccount; returns the snapshot
    root (``<root>/greeter.bench``) once it holds a snapshot."""
    kubeconfig = cp.token_kubeconfig(
        "projector", service_account_token(admin, NS, "greeter-client"), NS
    )
    root = cp.workdir / "kuberesolver"
    procs.append(start(
        [sys.executable, "-m", "kuberesolver.projector", f"--namespace={NS}",
         "--configmap=greeter", f"--dir={root / f'greeter.{NS}'}"],
        cp.workdir / "projector.log", {"KUBECONFIG": str(kubeconfig)},
    ))  # fmt: skip
    until(
        (root / f"greeter.{NS}/endpoints.json").exists,
        timeout_s=60,
        message="the projected snapshot",
    )
    return root


def start_go_kuberesolver(cp: ControlPlane, token: Path, target: str) -> subprocess.Popen[bytes]:
    """Go's kuberesolver on ``target`` as the ServiceAccount whose token is in ``token``."""
    return start(
        [str(go_client()), f"--server={cp.server}", f"--ca={cp.ca.cert_path}",
         f"--token-file={token}", f"--target={target}", "--id=go_kuberesolver"],
        cp.workdir / "go.log",
    )  # fmt: skip


def run_rounds(
    admin: client.ApiClient,
    backends: Backends,
    ips: list[str],
    clients: Sequence[str],
    rounds: int,
    on_ready: Callable[[str, float], None] = lambda ip, t0: None,
) -> dict[str, list[float]]:
    """Each round's time (s) from the pod marked Ready to each client's first call to it.

    Round ``r`` uses ``ips[r]`` (``ips[0]`` is the base pod); ``on_ready(ip, t0)`` runs
    once every client reached it, before the pod is deleted.
    """
    core = client.CoreV1Api(admin)
    samples: dict[str, list[float]] = {who: [] for who in clients}
    for r in range(1, rounds + 1):
        ip, name = ips[r], f"greeter-{r}"
        create_pod(admin, NS, name, ip, NODE, LABELS, ready=False)
        until(
            lambda ip=ip: slice_has(admin, ip, False),
            timeout_s=60,
            message=f"{name} listed not ready",
        )
        t0 = time.monotonic()
        set_pod_status(admin, NS, name, ip=ip, ready=True)
        backends.wait_reached(clients, ip, name)
        for who in clients:
            samples[who].append((backends.reached(who, ip) or t0) - t0)
        on_ready(ip, t0)
        core.delete_namespaced_pod(name, NS, grace_period_seconds=0)
        until(lambda ip=ip: not slice_has(admin, ip, None), timeout_s=60, message=f"{name} gone")
        print(
            f"round {r}: " + ", ".join(f"{w} {samples[w][-1] * 1000:.0f} ms" for w in clients),
            file=sys.stderr,
        )
    return samples


def latencies(samples: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """``{client: {"p50_ms", "p99_ms"}}``."""
    result = {}
    for who, values in samples.items():
        ms = [s * 1000 for s in values]
        result[who] = {
            "p50_ms": round(percentile(ms, 50), 1),
            "p99_ms": round(percentile(ms, 99), 1),
        }
    return result
