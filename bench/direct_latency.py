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
Option ``--rounds`` (default 20).
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
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _pod_ready as pod
from _common import emit, percentile
from kubernetes import client
from kubernetes.watch.watch import iter_resp_lines

from testenv import ControlPlane
from testenv.kube import api_client, service_account_token
from testenv.operator_process import OperatorProcess

CLIENTS = ("direct", "operator", "go_kuberesolver")


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
                resp = fn(pod.NS, label_selector=labels, field_selector=fields, watch=True,
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    ips, backends = pod.prepare(args.rounds, first_ip=3000)
    procs: list[subprocess.Popen[bytes]] = []
    with ControlPlane() as cp:
        work = cp.workdir
        admin = api_client(cp.admin_kubeconfig)
        pod.install_greeter(admin, ips[0])

        op_token = service_account_token(admin, "kuberesolver-system", "kuberesolver-operator")
        op = OperatorProcess(
            cp.token_kubeconfig("operator", op_token, "kuberesolver-system"), name="bench"
        )
        op.start()
        direct_token = work / "direct.token"
        direct_token.write_text(service_account_token(admin, pod.NS, "greeter-direct-client"))
        target = f"kubernetes:///greeter.{pod.NS}:grpc"
        stages: Stages | None = None
        try:
            root = pod.start_projector(cp, admin, procs)
            client_py = str(pod.ROOT / "bench/_latency_client.py")
            procs.append(pod.start(
                [sys.executable, client_py, "--mode=api", f"--target={target}", "--id=direct",
                 f"--server={cp.server}", f"--token-file={direct_token}",
                 f"--ca={cp.ca.cert_path}"],
                work / "direct.log",
            ))  # fmt: skip
            procs.append(pod.start(
                [sys.executable, client_py, "--mode=file", f"--target={target}", "--id=operator",
                 f"--dir={root}"],
                work / "operator-client.log",
            ))  # fmt: skip
            procs.append(pod.start_go_kuberesolver(cp, direct_token, target))
            backends.wait_reached(CLIENTS, ips[0], "the base pod")

            stages = Stages(admin, root / f"greeter.{pod.NS}")
            at: dict[str, list[float]] = {k: [] for k in ("slice", "configmap", "file")}

            def record_stages(ip: str, t0: float, stages: Stages = stages) -> None:
                for stage, times in at.items():
                    times.append((stages.at(stage, ip) or float("nan")) - t0)

            samples = pod.run_rounds(admin, backends, ips, CLIENTS, args.rounds, record_stages)
        finally:
            pod.stop(procs)
            op.stop()
            backends.server.stop(None)
            if stages is not None:
                stages.stop()

    result: dict[str, Any] = {"rounds": args.rounds, **pod.latencies(samples)}
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
