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
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _pod_ready as pod
from _common import emit

from kuberesolver.xds.bootstrap import DEFAULT_AUTHORITY, build_bootstrap, dumps
from testenv import ControlPlane
from testenv.controlplane import free_port
from testenv.grpc_go import xds_client
from testenv.kube import api_client, apply_cluster_rbac, service_account_token
from testenv.operator_process import OperatorProcess

CLIENTS = ("grpcio_xds", "grpc_go_xds", "file_path", "go_kuberesolver", "grpcio_xds_slices_only")
BASELINE = "go_kuberesolver"


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
    go_xds_binary = xds_client()
    ips, backends = pod.prepare(args.rounds, first_ip=3100)
    procs: list[subprocess.Popen[bytes]] = []
    go_xds: GoXdsCaller | None = None
    with ControlPlane() as cp:
        work = cp.workdir
        admin = api_client(cp.admin_kubeconfig)
        pod.install_greeter(admin, ips[0])
        # The feed's Pod watch.
        apply_cluster_rbac(admin, pod.ROOT / "manifests/optional/xds-pod-readiness")

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
        xds_target = f"xds://{DEFAULT_AUTHORITY}/greeter.{pod.NS}"
        token = work / "go.token"
        token.write_text(service_account_token(admin, pod.NS, "greeter-direct-client"))
        target = f"kubernetes:///greeter.{pod.NS}:grpc"
        client_py = str(pod.ROOT / "bench/_latency_client.py")
        try:
            root = pod.start_projector(cp, admin, procs)
            procs.append(pod.start(
                [sys.executable, client_py, "--mode=file", f"--target={target}",
                 "--id=file_path", f"--dir={root}"],
                work / "file-client.log",
            ))  # fmt: skip
            procs.append(pod.start(
                [sys.executable, client_py, "--mode=xds", f"--target={xds_target}",
                 "--id=grpcio_xds"],
                work / "grpcio-xds.log", {"GRPC_XDS_BOOTSTRAP": str(bootstrap)},
            ))  # fmt: skip
            procs.append(pod.start(
                [sys.executable, client_py, "--mode=xds", f"--target={xds_target}",
                 "--id=grpcio_xds_slices_only"],
                work / "grpcio-xds-slices.log", {"GRPC_XDS_BOOTSTRAP": str(bootstrap_slices)},
            ))  # fmt: skip
            procs.append(pod.start_go_kuberesolver(cp, token, target))
            go_xds = GoXdsCaller(go_xds_binary, xds_target, bootstrap, work / "grpc-go-xds.log")
            backends.wait_reached(CLIENTS, ips[0], "the base pod")
            samples = pod.run_rounds(admin, backends, ips, CLIENTS, args.rounds)
        finally:
            if go_xds is not None:
                go_xds.stop()
            pod.stop(procs)
            op.stop()
            op_slices.stop()
            backends.server.stop(None)

    result: dict[str, Any] = {"rounds": args.rounds, **pod.latencies(samples)}
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
