"""From a pod marked Ready to the first RPC that reaches it: direct mode vs the operator vs Go.

One control plane, one Service, three clients calling side by side (each its
own process, a call every millisecond, tagged with metadata ``x-client``):

- ``direct``: this library in direct mode, under the Role in
  manifests/examples/direct-mode-rbac.yaml;
- ``operator``: the operator (its own RBAC) -> ConfigMap -> projector ->
  files -> this library's file source (as the e2e tests run it);
- ``go_kuberesolver``: Go's sercand/kuberesolver v6, built from the Go module
  proxy (bench/go/kuberesolver-client, cached outside the repo; built only
  when missing), with the same ServiceAccount token as ``direct``.

Each round adds a pod (not ready), waits for its slice entry, then marks it
Ready and times, on the backends' clock, the first call of each client that
reaches its IP; then the pod is deleted. The backends are one gRPC server on
every pod IP in a private network namespace.

Last line: ``{"direct": {"p50_ms", "p99_ms"}, "operator": {...},
"go_kuberesolver": {...}, "ratio_p50", "ratio_p99", "rounds"}`` with the
ratios direct over Go (goal <= 1.0); also ``operator_ratio_p50`` (the
operator path over Go, goal <= 1.5, default settings) and ``stages_ms``: the
p50, from the pod marked Ready, of when an admin watch saw it ready in the
EndpointSlice (``slice``) and in the ConfigMap (``configmap``), when the
projected file held it (``file``, polled every millisecond) and each client's
first call (``first_rpc_<client>``), with ``steps_ms``, the p50 of each
step's own share per round (``slice``, ``slice_to_configmap``,
``configmap_to_file``, ``file_to_rpc``, and ``slice_to_rpc_go``).
Options: ``--rounds`` (default 20); ``--quiet-ms`` (default 1500), the pause
before each round, so that each pod turns Ready in a Service that was quiet
for that long, as in a rollout whose pods take seconds to become ready. The
operator's default write budget (5 writes, then one per 300 ms) is full again
after 1500 ms; ``--quiet-ms=0`` runs the rounds back to back, a storm of three
changes every few hundred ms, where the budget coalesces on purpose.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from concurrent import futures
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc
from _common import emit, percentile
from kubernetes import client
from kubernetes.watch.watch import iter_resp_lines

from testenv import ControlPlane, ensure_binaries
from testenv.kube import (
    api_client,
    apply,
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
GO_MODULE = ROOT / "bench/go/kuberesolver-client"
GO_VERSION = "v6.0.1"  # github.com/sercand/kuberesolver/v6, as pinned in GO_MODULE/go.mod
NS = "bench"
PORT = 50051
CLIENTS = ("direct", "operator", "go_kuberesolver")


def go_client() -> Path:
    """The Go client binary, built once into the testenv cache."""
    cache = Path(
        os.environ.get("KUBERESOLVER_TESTENV_CACHE", Path.home() / ".cache/kuberesolver-testenv")
    )
    binary = cache / f"go-kuberesolver-{GO_VERSION}" / "kuberesolver-client"
    if not binary.is_file():
        binary.parent.mkdir(parents=True, exist_ok=True)
        print(f"building {binary} (Go's kuberesolver {GO_VERSION})", file=sys.stderr)
        subprocess.run(
            ["go", "build", "-trimpath", "-o", str(binary), "."],
            cwd=GO_MODULE,
            check=True,
            env={**os.environ, "CGO_ENABLED": "0"},
        )
    return binary


class Backends:
    """One gRPC server on many pod IPs; records when each client first reached each IP."""

    def __init__(self, ips: list[str]) -> None:
        self.first: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        handler = grpc.method_handlers_generic_handler(
            "demo.Greeter", {"SayHello": grpc.unary_unary_rpc_method_handler(self._hello)}
        )
        self.server.add_generic_rpc_handlers((handler,))
        for ip in ips:
            if self.server.add_insecure_port(f"{ip}:{PORT}") == 0:
                raise OSError(f"cannot listen on {ip}:{PORT}")
        self.server.start()

    def _hello(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        now = time.monotonic()
        ip = context.peer().split(":")[1]
        who = dict(context.invocation_metadata()).get("x-client", "?")
        key = (str(who), ip)
        with self._lock:
            self.first.setdefault(key, now)
        return b"ok"

    def reached(self, who: str, ip: str) -> float | None:
        with self._lock:
            return self.first.get((who, ip))


class Stages:
    """When each pod IP was first seen ready: in its EndpointSlice, its ConfigMap and the file.

    Two admin watches (the Service's slices, the GrpcTarget's ConfigMap) and
    a poll of the projected file every millisecond, each on its own thread.
    """

    def __init__(self, api: client.ApiClient, snapshot: Path) -> None:
        self.seen: dict[str, dict[str, float]] = {"slice": {}, "configmap": {}, "file": {}}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        core, discovery = client.CoreV1Api(api), client.DiscoveryV1Api(api)
        self._snapshot = snapshot
        self._threads = [
            threading.Thread(target=self._watch, args=(
                "slice", discovery.list_namespaced_endpoint_slice,
                "kubernetes.io/service-name=greeter", "", _slice_ready,
            ), daemon=True),
            threading.Thread(target=self._watch, args=(
                "configmap", core.list_namespaced_config_map, "", "metadata.name=greeter",
                _configmap_ready,
            ), daemon=True),
            threading.Thread(target=self._poll_file, daemon=True),
        ]  # fmt: skip
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()

    def at(self, stage: str, ip: str) -> float | None:
        with self._lock:
            return self.seen[stage].get(ip)

    def _record(self, stage: str, ips: set[str], now: float) -> None:
        with self._lock:
            for ip in ips:
                self.seen[stage].setdefault(ip, now)

    def _watch(self, stage: str, fn: Any, labels: str, fields: str, ready: Any) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):  # a dropped watch: start again
                resp = fn(NS, label_selector=labels, field_selector=fields, watch=True,
                          timeout_seconds=300, _preload_content=False)  # fmt: skip
                for line in iter_resp_lines(resp):
                    now = time.monotonic()
                    event = json.loads(line)
                    if event.get("type") in ("ADDED", "MODIFIED"):
                        self._record(stage, ready(event["object"]), now)
                    if self._stop.is_set():
                        return

    def _poll_file(self) -> None:
        path = self._snapshot / "endpoints.json"
        last = ""
        while not self._stop.wait(0.001):
            try:
                target = os.readlink(self._snapshot / "..data")
            except OSError:
                continue
            if target == last:
                continue
            now = time.monotonic()
            with contextlib.suppress(OSError, ValueError):
                self._record("file", _snapshot_ready(path.read_text()), now)
                last = target


def _slice_ready(obj: dict[str, Any]) -> set[str]:
    return {
        a
        for e in obj.get("endpoints") or []
        if (e.get("conditions") or {}).get("ready")
        for a in e.get("addresses") or []
    }


def _snapshot_ready(text: str) -> set[str]:
    return {str(e["address"]) for e in json.loads(text)["endpoints"] if e.get("ready")}


def _configmap_ready(obj: dict[str, Any]) -> set[str]:
    raw = (obj.get("data") or {}).get("endpoints.json")
    return _snapshot_ready(raw) if raw else set()


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--quiet-ms", type=int, default=1500)
    args = parser.parse_args()
    go_binary = go_client()
    ensure_binaries()
    enter_private_network()
    base = 3000
    ips = [pod_ip(base + i) for i in range(args.rounds + 2)]
    backends = Backends(ips)
    procs: list[subprocess.Popen[bytes]] = []
    with ControlPlane() as cp:
        work = cp.workdir
        admin = api_client(cp.admin_kubeconfig)
        core = client.CoreV1Api(admin)
        apply(admin, ROOT / "crds", ROOT / "manifests/namespace.yaml", ROOT / "manifests/rbac.yaml")
        create_namespace(admin, NS)  # and its default ServiceAccount, which Pods need
        for path in ("direct-mode-rbac.yaml", "projector-sidecar.yaml", "greeter.yaml"):
            for doc in documents(ROOT / "manifests/examples" / path):
                # The bench makes its own Namespace, Service and Pods (the example's are a user's).
                if doc["kind"] not in ("Namespace", "Pod", "Service"):
                    apply_object(admin, in_namespace(doc))
        create_node(admin, "node-bench")
        create_service(admin, NS, "greeter")
        create_pod(admin, NS, "greeter-base", ips[0], "node-bench", {"app": "greeter"})
        until(
            lambda: slice_has(admin, ips[0], True), timeout_s=60, message="the base pod in a slice"
        )

        op_token = service_account_token(admin, "kuberesolver-system", "kuberesolver-operator")
        op = OperatorProcess(
            cp.token_kubeconfig("operator", op_token, "kuberesolver-system"), name="bench"
        )
        op.start()
        direct_token = work / "direct.token"
        direct_token.write_text(service_account_token(admin, NS, "greeter-direct-client"))
        projector_kc = cp.token_kubeconfig(
            "projector", service_account_token(admin, NS, "greeter-client"), NS
        )
        root = work / "kuberesolver"
        target = f"kubernetes:///greeter.{NS}:grpc"
        stages: Stages | None = None
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
            client_py = str(ROOT / "bench/_latency_client.py")
            procs.append(start(
                [sys.executable, client_py, "--mode=api", f"--target={target}", "--id=direct",
                 f"--server={cp.server}", f"--token-file={direct_token}",
                 f"--ca={cp.ca.cert_path}"],
                work / "direct.log",
            ))  # fmt: skip
            procs.append(start(
                [sys.executable, client_py, "--mode=file", f"--target={target}", "--id=operator",
                 f"--dir={root}"],
                work / "operator-client.log",
            ))  # fmt: skip
            procs.append(start(
                [str(go_binary), f"--server={cp.server}", f"--ca={cp.ca.cert_path}",
                 f"--token-file={direct_token}", f"--target={target}", "--id=go_kuberesolver"],
                work / "go.log",
            ))  # fmt: skip
            for who in CLIENTS:
                until(
                    lambda w=who: backends.reached(w, ips[0]) is not None,
                    timeout_s=60,
                    message=f"{who} to reach the base pod",
                )

            stages = Stages(admin, root / f"greeter.{NS}")
            samples: dict[str, list[float]] = {who: [] for who in CLIENTS}
            at: dict[str, list[float]] = {k: [] for k in ("slice", "configmap", "file")}
            for r in range(1, args.rounds + 1):
                ip, name = ips[r], f"greeter-{r}"
                time.sleep(args.quiet_ms / 1000)  # the workload's pace, not a wait for a condition
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
                for stage, times in at.items():
                    times.append((stages.at(stage, ip) or float("nan")) - t0)
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
            for p in procs:
                p.terminate()
            for p in procs:
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
            op.stop()
            backends.server.stop(None)
            if stages is not None:
                stages.stop()

    result: dict[str, Any] = {"rounds": args.rounds, "quiet_ms": args.quiet_ms}
    for who in CLIENTS:
        ms = [s * 1000 for s in samples[who]]
        result[who] = {
            "p50_ms": round(percentile(ms, 50), 1),
            "p99_ms": round(percentile(ms, 99), 1),
        }
    go = result["go_kuberesolver"]
    result["ratio_p50"] = round(result["direct"]["p50_ms"] / max(go["p50_ms"], 0.1), 3)
    result["ratio_p99"] = round(result["direct"]["p99_ms"] / max(go["p99_ms"], 0.1), 3)
    result["operator_ratio_p50"] = round(result["operator"]["p50_ms"] / max(go["p50_ms"], 0.1), 3)

    def p50(values: list[float]) -> float:
        kept = [v * 1000 for v in values if v == v]  # NaN: a stage not seen that round
        return round(percentile(kept, 50), 1) if kept else float("nan")

    result["stages_ms"] = {k: p50(v) for k, v in at.items()} | {
        f"first_rpc_{who}": p50(samples[who]) for who in CLIENTS
    }
    steps = list(
        zip(at["slice"], at["configmap"], at["file"], samples["operator"],
            samples["go_kuberesolver"], strict=True)
    )  # fmt: skip
    result["steps_ms"] = {
        "slice": p50([s for s, *_ in steps]),
        "slice_to_configmap": p50([c - s for s, c, *_ in steps]),
        "configmap_to_file": p50([f - c for _, c, f, *_ in steps]),
        "file_to_rpc": p50([o - f for _, _, f, o, _ in steps]),
        "slice_to_rpc_go": p50([g - s for s, *_, g in steps]),
    }
    emit(result)


if __name__ == "__main__":
    main()
