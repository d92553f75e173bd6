"""From a pod marked Ready to the first RPC that reaches it: the operator's xDS vs files vs Go.

One control plane, one Service, five clients calling side by side
(each its own process):

- ``grpcio_xds``: plain ``grpc.insecure_channel("xds://xds.kuberesolver.io/greeter.bench")``
  with a bootstrap from ``python -m kuberesolver bootstrap``, served by the
  operator's ADS server (``KUBERESOLVER_XDS_ADDRESS``; no kuberesolver code in
  the client), a call every millisecond;
- ``grpc_go_xds``: grpc-go's own xDS client (testenv/gomod/grpc-go-xds, built
  from the module proxy), same target and bootstrap, calls back to back;
- ``file_path``: the operator -> ConfigMap -> projector -> files -> this
  library's file source, a call every millisecond;
- ``go_kuberesolver``: Go's sercand/kuberesolver v6 watching the apiserver
  itself (bench/go/kuberesolver-client), a call every millisecond.

- ``grpcio_xds_slices_only``: as ``grpcio_xds``, through a second operator
  replica with ``KUBERESOLVER_XDS_POD_READINESS=false``, which serves readiness
  from the EndpointSlices alone (what the Pod watch is worth).

Both operator replicas run under manifests/rbac.yaml plus optional/xds-pod-readiness's
Pod watch rule.

Each round adds a pod (not ready), waits for its slice entry, then marks it
Ready and times, on the backends' clock, the first call of each client that
reaches its IP; then the pod is deleted. The backends are one gRPC server on
every pod IP in a private network namespace; the Python and Go-kuberesolver
clients tag their calls (metadata ``x-client``), grpc-go's calls another method.

Last line: ``{"grpcio_xds": {"p50_ms", "p99_ms"}, "grpc_go_xds": {...},
"file_path": {...}, "go_kuberesolver": {...}, "grpcio_xds_slices_only": {...},
"ratios": {...}, "rounds"}``;
``ratios`` holds each path's p50 and p99 over Go kuberesolver's (goal for
both xDS paths: <= 1.0). Option ``--rounds`` (default 20).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from concurrent import futures
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc
from _common import emit, percentile
from direct_latency import NS, PORT, go_client, in_namespace, slice_has, start
from kubernetes import client

from kuberesolver.xds.bootstrap import DEFAULT_AUTHORITY, build_bootstrap, dumps
from testenv import ControlPlane, ensure_binaries
from testenv.controlplane import free_port
from testenv.grpc_go import xds_client
from testenv.kube import (
    api_client,
    apply,
    apply_cluster_rbac,
    apply_object,
    create_namespace,
    documents,
    service_account_token,
)
from testenv.netns import enter_private_network, pod_ip
from testenv.operator_process import OperatorProcess
from testenv.wait import until
from testenv.workloads import create_node, create_pod, create_service, set_pod_status

ROOT = Path(__file__).resolve().parent.parent
CLIENTS = ("grpcio_xds", "grpc_go_xds", "file_path", "go_kuberesolver", "grpcio_xds_slices_only")
BASELINE = "go_kuberesolver"


class Backends:
    """One gRPC server on many pod IPs; records when each client first reached each IP."""

    def __init__(self, ips: list[str]) -> None:
        self.first: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        greeter = grpc.method_handlers_generic_handler(
            "demo.Greeter", {"SayHello": grpc.unary_unary_rpc_method_handler(self._hello)}
        )
        echo = grpc.method_handlers_generic_handler(  # grpc-go-xds's method: no metadata
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


class GoXdsCaller:
    """Keeps grpc-go-xds busy: a batch of calls on target 0 whenever the last one answered."""

    def __init__(self, binary: Path, target: str, bootstrap: Path, log: Path) -> None:
        self.log = log.open("wb")
        self.proc = subprocess.Popen(
            [str(binary), target],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            env={"GRPC_XDS_BOOTSTRAP": str(bootstrap), "PATH": "/usr/bin:/bin"},
        )
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdout.readline()  # {"ready": true}
        try:
            while self.proc.poll() is None:
                self.proc.stdin.write(b"0 200\n")
                self.proc.stdin.flush()
                if not self.proc.stdout.readline():
                    return
        except (BrokenPipeError, ValueError):
            return

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    go_binary = go_client()
    go_xds_binary = xds_client()
    ensure_binaries()
    enter_private_network()
    base = 3100
    ips = [pod_ip(base + i) for i in range(args.rounds + 2)]
    backends = Backends(ips)
    procs: list[subprocess.Popen[bytes]] = []
    go_xds: GoXdsCaller | None = None
    samples: dict[str, list[float]] = {who: [] for who in CLIENTS}
    with ControlPlane() as cp:
        work = cp.workdir
        admin = api_client(cp.admin_kubeconfig)
        core = client.CoreV1Api(admin)
        apply(admin, ROOT / "crds", ROOT / "manifests/namespace.yaml", ROOT / "manifests/rbac.yaml")
        # The feed's Pod watch.
        apply_cluster_rbac(admin, ROOT / "manifests/optional/xds-pod-readiness")
        create_namespace(admin, NS)
        for path in ("direct-mode-rbac.yaml", "projector-sidecar.yaml", "greeter.yaml"):
            for doc in documents(ROOT / "manifests/examples" / path):
                if doc["kind"] not in ("Namespace", "Pod", "Service"):
                    apply_object(admin, in_namespace(doc))
        create_node(admin, "node-bench")
        create_service(admin, NS, "greeter")
        create_pod(admin, NS, "greeter-base", ips[0], "node-bench", {"app": "greeter"})
        until(
            lambda: slice_has(admin, ips[0], True), timeout_s=60, message="the base pod in a slice"
        )

        xds_port = free_port()
        op_token = service_account_token(admin, "kuberesolver-system", "kuberesolver-operator")
        op = OperatorProcess(
            cp.token_kubeconfig("operator", op_token, "kuberesolver-system"),
            env={"KUBERESOLVER_XDS_ADDRESS": f"127.0.0.1:{xds_port}"},
            name="bench",
        )
        op.start()
        slices_port = free_port()
        op_slices = OperatorProcess(
            cp.token_kubeconfig("operator-slices", op_token, "kuberesolver-system"),
            env={
                "KUBERESOLVER_XDS_ADDRESS": f"127.0.0.1:{slices_port}",
                "KUBERESOLVER_XDS_POD_READINESS": "false",
            },
            name="bench-slices",
        )
        op_slices.start()
        bootstrap = work / "xds-bootstrap.json"
        bootstrap.write_text(dumps(build_bootstrap(f"127.0.0.1:{xds_port}", node_id="bench")))
        bootstrap_slices = work / "xds-bootstrap-slices.json"
        bootstrap_slices.write_text(
            dumps(build_bootstrap(f"127.0.0.1:{slices_port}", node_id="bench-slices"))
        )
        xds_target = f"xds://{DEFAULT_AUTHORITY}/greeter.{NS}"
        token = work / "go.token"
        token.write_text(service_account_token(admin, NS, "greeter-direct-client"))
        projector_kc = cp.token_kubeconfig(
            "projector", service_account_token(admin, NS, "greeter-client"), NS
        )
        root = work / "kuberesolver"
        target = f"kubernetes:///greeter.{NS}:grpc"
        client_py = str(ROOT / "bench/_latency_client.py")
        try:
            procs.append(start(
                [sys.executable, "-m", "kuberesolver.projector", f"--namespace={NS}",
                 "--configmap=greeter", f"--dir={root / f'greeter.{NS}'}"],
                work / "projector.log", {"KUBECONFIG": str(projector_kc)},
            ))  # fmt: skip
            until(
                (root / f"greeter.{NS}/endpoints.json").exists,
                timeout_s=60,
                message="the projected snapshot",
            )
            procs.append(start(
                [sys.executable, client_py, "--mode=file", f"--target={target}",
                 "--id=file_path", f"--dir={root}"],
                work / "file-client.log",
            ))  # fmt: skip
            procs.append(start(
                [sys.executable, client_py, "--mode=xds", f"--target={xds_target}",
                 "--id=grpcio_xds"],
                work / "grpcio-xds.log", {"GRPC_XDS_BOOTSTRAP": str(bootstrap)},
            ))  # fmt: skip
            procs.append(start(
                [sys.executable, client_py, "--mode=xds", f"--target={xds_target}",
                 "--id=grpcio_xds_slices_only"],
                work / "grpcio-xds-slices.log", {"GRPC_XDS_BOOTSTRAP": str(bootstrap_slices)},
            ))  # fmt: skip
            procs.append(start(
                [str(go_binary), f"--server={cp.server}", f"--ca={cp.ca.cert_path}",
                 f"--token-file={token}", f"--target={target}", "--id=go_kuberesolver"],
                work / "go.log",
            ))  # fmt: skip
            go_xds = GoXdsCaller(go_xds_binary, xds_target, bootstrap, work / "grpc-go-xds.log")
            for who in CLIENTS:
                until(
                    lambda w=who: backends.reached(w, ips[0]) is not None,
                    timeout_s=60,
                    message=f"{who} to reach the base pod",
                )

            for r in range(1, args.rounds + 1):
                ip, name = ips[r], f"greeter-{r}"
                create_pod(admin, NS, name, ip, "node-bench", {"app": "greeter"}, ready=False)
                until(
                    lambda ip=ip: slice_has(admin, ip, False),
                    timeout_s=60,
                    message=f"{name} listed not ready",
                )
                t0 = time.monotonic()
                set_pod_status(admin, NS, name, ip=ip, ready=True)
                until(
                    lambda ip=ip: all(backends.reached(w, ip) is not None for w in CLIENTS),
                    timeout_s=60,
                    message=f"every client to reach {name}",
                )
                for who in CLIENTS:
                    samples[who].append((backends.reached(who, ip) or t0) - t0)
                core.delete_namespaced_pod(name, NS, grace_period_seconds=0)
                until(
                    lambda ip=ip: not slice_has(admin, ip, None),
                    timeout_s=60,
                    message=f"{name} gone",
                )
                print(
                    f"round {r}: "
                    + ", ".join(f"{w} {samples[w][-1] * 1000:.0f} ms" for w in CLIENTS),
                    file=sys.stderr,
                )
        finally:
            if go_xds is not None:
                go_xds.stop()
            for p in procs:
                p.terminate()
            for p in procs:
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
            op.stop()
            op_slices.stop()
            backends.server.stop(None)

    result: dict[str, Any] = {"rounds": args.rounds}
    for who in CLIENTS:
        ms = [s * 1000 for s in samples[who]]
        result[who] = {
            "p50_ms": round(percentile(ms, 50), 1),
            "p99_ms": round(percentile(ms, 99), 1),
        }
    go = result[BASELINE]
    result["ratios"] = {
        f"{who}_{p}": round(result[who][f"{p}_ms"] / max(go[f"{p}_ms"], 0.1), 3)
        for who in CLIENTS
        if who != BASELINE
        for p in ("p50", "p99")
    }
    emit(result)


if __name__ == "__main__":
    main()
