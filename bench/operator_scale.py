"""The operator at scale, on the real control plane, under its own RBAC, in two tiers.

Each tier runs on a fresh control plane and prints its figures under its name
(``{"tier1": {...}, "tier2": {...}}``), with its goals beside them:

- ``tier1``: 200 targets x 50 endpoints, 20 changes/s (goals: p99 <= 500 ms, RSS <= 200 MiB);
- ``tier2``: 1,000 targets x 100 endpoints (100,000 endpoints), 50 changes/s
  (goals: p99 <= 250 ms, RSS <= 500 MiB, initial sync <= 30 s). 50/s, not
  100/s: at 100/s the apiserver, etcd and the bench's own writes alone need
  about 1.7 of this machine's 2 cores, so the control plane, not the
  operator, would set the latency. What the operator alone would need at
  100/s is reported beside it (``operator_cores_at_100_per_s``).

World (tier1's numbers): 200 GrpcTargets over 200 headless Services without selectors, each
with one EndpointSlice of 50 endpoints. To make 10,000 endpoints cheaply the
bench writes those EndpointSlices itself, as admin, with its own
``endpointslice.kubernetes.io/managed-by`` label, instead of creating 10,000
Pods for the endpointslice controller: the operator reads every slice that
carries ``kubernetes.io/service-name`` whoever manages it, so what it sees is
the same.

Then churn: 20 EndpointSlice changes per second for 60 s, round-robin over the
Services (each change replaces one endpoint with a fresh address, so every
change is one real endpoint change and one ConfigMap write). An admin watch
on the ConfigMaps notices when each change is published.

Reported (one JSON object on the last line):

- ``update_ms_p50`` / ``update_ms_p99``: from sending a slice change to the
  ConfigMap event that holds it (goal: p99 <= 500);
- ``changes`` and ``configmap_writes`` (ConfigMap updates during the churn,
  from the operator's own counter): coalescing keeps writes <= changes;
- ``operator_rss_mib``: the operator's peak RSS (goal <= 200);
- ``apiserver_watches_opened``: watches the operator holds open on the
  apiserver (the apiserver's ``apiserver_longrunning_requests{verb="WATCH"}``
  with the operator running, minus before it started);
- ``initial_sync_s``: from the operator's start to all 200 ConfigMaps published;
- ``burst_changes`` / ``burst_configmap_writes``: after the churn, 40 changes
  to one Service as fast as the API takes them (a rollout): coalesced into a
  few writes (``KUBERESOLVER_WRITE_BUDGET``, by default 5 at once, then one per 300 ms).

Also reported: each process's CPU during the churn (``churn_cpu_s``, and
``cpu_ms_per_change``), and ``cores_needed_at_rate``: what the whole system
(apiserver, etcd, controller-manager, operator and the bench's own writes)
would need to keep up with the tier's rate. On a 2-core machine a value
above 2 means the control plane, not the operator, sets the latency.
``operator_cores_at_100_per_s`` is the operator's own CPU per change times
100 changes/s; ``operator_cpu_s_user_system`` splits its churn CPU, and
``operator_context_switches_per_change`` counts its threads' switches;
``operator_idle_cores`` is its CPU over 15 s with nothing changing, before the churn;
``sustained`` says whether the bench sent at the rate asked (within 5%) and
every change was published.

Options: ``--tier tier1|tier2|all`` (default all), ``--seconds`` (the churn,
default 60), ``--rate`` (changes per second, default the tier's), ``--profile DIR``
(py-spy profiles of the operator, in py-spy's raw collapsed-stack format, of
the samples that held the GIL: ``<tier>-sync.txt`` from its start to the
initial sync, ``<tier>.txt`` over the churn).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import ipaddress
import json
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil
from _common import emit, percentile
from kubernetes import client
from kubernetes.watch.watch import iter_resp_lines

from kuberesolver.core.snapshot import ENDPOINTS_KEY
from testenv import ControlPlane
from testenv.kube import api_client, apply, service_account_token
from testenv.operator_process import OperatorProcess
from testenv.wait import WaitTimeout, until

ROOT = Path(__file__).resolve().parent.parent
NS = "bench"
GROUP, VERSION, PLURAL = "kuberesolver.io", "v1alpha1", "grpctargets"
BASE = int(ipaddress.IPv4Address("10.0.0.0"))
BURST = 40
IDLE_S = 15.0


def address(service: int, serial: int) -> str:
    return str(ipaddress.IPv4Address(BASE + service * 65536 + serial + 1))


def slice_body(service: int, addresses: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"svc-{service}-bench",
            "labels": {
                "kubernetes.io/service-name": f"svc-{service}",
                "endpointslice.kubernetes.io/managed-by": "bench.kuberesolver.io",
            },
        },
        "addressType": "IPv4",
        "ports": [{"name": "grpc", "port": 50051, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": [a], "conditions": {"ready": True}, "nodeName": "node-a", "zone": "z1"}
            for a in addresses
        ],
    }


def watches(kubeconfig: Path) -> int:
    """Open WATCH requests on the apiserver, from its own metrics."""
    out = subprocess.run(
        ["kubectl", f"--kubeconfig={kubeconfig}", "get", "--raw", "/metrics"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    total = 0.0
    for line in out.splitlines():
        if line.startswith("apiserver_longrunning_requests{") and 'verb="WATCH"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


class ConfigMapWatcher(threading.Thread):
    """An admin watch on the bench's ConfigMaps: when did each address appear."""

    def __init__(self, api: client.ApiClient) -> None:
        super().__init__(daemon=True)
        self.core = client.CoreV1Api(api)
        self.lock = threading.Lock()
        self.current: dict[str, set[str]] = {}
        self.seen_at: dict[tuple[str, str], float] = {}  # (configmap, address) -> first seen
        self.events = 0
        self.stopping = False
        self.ready = threading.Event()

    def run(self) -> None:
        try:
            self._run()
        except Exception:
            if not self.stopping:
                raise

    def _run(self) -> None:
        while not self.stopping:
            listed = self.core.list_namespaced_config_map(
                NS, label_selector="app.kubernetes.io/managed-by=kuberesolver",
                _preload_content=False,
            )  # fmt: skip
            body = json.loads(listed.data)
            for cm in body.get("items") or []:
                self._record(cm, time.monotonic())
            self.ready.set()
            resp = self.core.list_namespaced_config_map(
                NS, label_selector="app.kubernetes.io/managed-by=kuberesolver", watch=True,
                resource_version=body["metadata"]["resourceVersion"], timeout_seconds=600,
                _preload_content=False,
            )  # fmt: skip
            for line in iter_resp_lines(resp):
                now = time.monotonic()
                event = json.loads(line)
                if event.get("type") in ("ADDED", "MODIFIED"):
                    self.events += 1
                    self._record(event["object"], now)
                if self.stopping:
                    break

    def _record(self, cm: dict[str, Any], now: float) -> None:
        name = cm["metadata"]["name"]
        raw = (cm.get("data") or {}).get(ENDPOINTS_KEY)
        if not raw:
            return
        # The addresses only (no validation): the bench's own CPU is part of the machine's load.
        addrs = {str(e["address"]) for e in json.loads(raw)["endpoints"]}
        with self.lock:
            for a in addrs - self.current.get(name, set()):
                self.seen_at.setdefault((name, a), now)
            self.current[name] = addrs

    def count_complete(self, want: int) -> int:
        with self.lock:
            return sum(1 for v in self.current.values() if len(v) == want)


def operator_metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") or line.startswith(name + " ")
    )


@dataclass(frozen=True)
class Tier:
    name: str
    targets: int
    endpoints: int
    rate: float
    seconds: float
    goal_update_ms_p99: float
    goal_operator_rss_mib: float
    goal_initial_sync_s: float | None = None


TIERS = {
    "tier1": Tier("tier1", 200, 50, 20.0, 60.0, 500, 200),
    "tier2": Tier("tier2", 1000, 100, 50.0, 60.0, 250, 500, 30),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tier", choices=[*TIERS, "all"], default="all")
    parser.add_argument("--seconds", type=float, help="churn duration (default: the tier's 60)")
    parser.add_argument("--rate", type=float, help="changes per second (default: the tier's)")
    parser.add_argument("--profile", type=Path, help="write a py-spy profile of the operator here")
    args = parser.parse_args()
    names = list(TIERS) if args.tier == "all" else [args.tier]
    result: dict[str, Any] = {}
    for name in names:
        tier = TIERS[name]
        if args.seconds:
            tier = dataclasses.replace(tier, seconds=args.seconds)
        if args.rate:
            tier = dataclasses.replace(tier, rate=args.rate)
        result[name] = run_tier(tier, args.profile)
        print(json.dumps({name: result[name]}), file=sys.stderr)
    emit(result)


def cpu_s(proc: psutil.Process) -> float:
    """User plus system CPU seconds of ``proc`` and its children so far."""
    t = proc.cpu_times()
    return float(t.user + t.system + t.children_user + t.children_system)


def done(resp: Any) -> None:
    """Read a raw response to its end (no model objects: they cost more than the request)."""
    _ = resp.data
    resp.release_conn()


def create_world(admin: client.ApiClient, n: int, m: int, live: list[list[str]]) -> None:
    """Services, EndpointSlices and GrpcTargets, a few requests at a time."""
    core = client.CoreV1Api(admin)
    discovery = client.DiscoveryV1Api(admin)
    custom = client.CustomObjectsApi(admin)

    def one(s: int) -> None:
        done(core.create_namespaced_service(NS, {
            "metadata": {"name": f"svc-{s}"},
            "spec": {"clusterIP": "None",
                     "ports": [{"name": "grpc", "port": 8080, "targetPort": 50051}]},
        }, _preload_content=False))  # fmt: skip
        done(discovery.create_namespaced_endpoint_slice(
            NS, slice_body(s, live[s]), _preload_content=False
        ))  # fmt: skip
        done(custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "GrpcTarget",
            "metadata": {"name": f"gt-{s}"}, "spec": {"service": f"svc-{s}", "port": "grpc"},
        }, _preload_content=False))  # fmt: skip

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(n)))


def run_tier(tier: Tier, profile_dir: Path | None) -> dict[str, Any]:
    n, m = tier.targets, tier.endpoints
    with ControlPlane() as cp:
        admin = api_client(cp.admin_kubeconfig)
        apply(admin, ROOT / "crds", ROOT / "manifests/namespace.yaml", ROOT / "manifests/rbac.yaml")
        token = service_account_token(admin, "kuberesolver-system", "kuberesolver-operator")
        op_kubeconfig = cp.token_kubeconfig("operator", token, "kuberesolver-system")
        core = client.CoreV1Api(admin)
        discovery = client.DiscoveryV1Api(admin)
        core.create_namespace({"metadata": {"name": NS}})

        print(f"creating {n} Services, {n} EndpointSlices of {m} endpoints, {n} GrpcTargets",
              file=sys.stderr)  # fmt: skip
        serial = [m] * n  # next fresh address per service
        live: list[list[str]] = [[address(s, i) for i in range(m)] for s in range(n)]
        t_create = time.monotonic()
        create_world(admin, n, m, live)
        print(f"created in {time.monotonic() - t_create:.1f} s", file=sys.stderr)

        watcher = ConfigMapWatcher(api_client(cp.admin_kubeconfig))
        watcher.start()
        watcher.ready.wait(30)
        watches_before = watches(cp.admin_kubeconfig)

        # The operator's default write budget.
        op = OperatorProcess(op_kubeconfig, name="operator-scale", quiet=True)
        metrics_port = op.metrics_port
        t_start = time.monotonic()
        op.start()
        assert op.popen is not None
        proc = psutil.Process(op.popen.pid)
        spy: subprocess.Popen[bytes] | None = None

        def profile(phase: str) -> subprocess.Popen[bytes] | None:
            """py-spy on the operator from now on (``None`` without ``--profile``)."""
            if profile_dir is None:
                return None
            profile_dir.mkdir(parents=True, exist_ok=True)
            return subprocess.Popen(
                [str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(proc.pid),
                 "--rate", "50", "--format", "raw", "--nonblocking", "--gil",
                 "-o", str(profile_dir / f"{tier.name}{phase}.txt")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip

        def end_profile() -> None:
            nonlocal spy
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait(60)
                spy = None

        spy = profile("-sync")
        peak_rss = 0

        def sample_rss() -> None:
            nonlocal peak_rss
            peak_rss = max(peak_rss, proc.memory_info().rss)

        try:

            def converged() -> bool:
                if not op.alive:
                    raise RuntimeError(f"the operator exited:\n{op.log_tail()}")
                sample_rss()
                return watcher.count_complete(m) >= n

            try:
                until(converged, timeout_s=600, interval_s=0.2, retry_on=())
            except WaitTimeout as exc:
                raise RuntimeError(
                    f"the operator did not converge: {exc}\n{op.log_tail()}"
                ) from None
            initial_sync_s = time.monotonic() - t_start
            end_profile()
            time.sleep(2)
            # The operator's own CPU with nothing changing (the Lease, watches, timers).
            idle_before, idle_t0 = cpu_s(proc), time.monotonic()
            time.sleep(IDLE_S)
            idle_cores = (cpu_s(proc) - idle_before) / (time.monotonic() - idle_t0)
            watches_with = watches(cp.admin_kubeconfig)
            writes_before = operator_metric(
                metrics_port, "kuberesolver_operator_configmap_writes_total"
            )
            print(f"initial sync {initial_sync_s:.1f} s; churn {tier.rate}/s for {tier.seconds} s",
                  file=sys.stderr)  # fmt: skip

            procs = {"operator": proc, "bench": psutil.Process()} | {
                name: psutil.Process(p.popen.pid) for name, p in cp.processes.items()
            }
            spy = profile("")
            cpu_before = {name: cpu_s(p) for name, p in procs.items()}
            op_times_before = proc.cpu_times()
            switches_before = proc.num_ctx_switches()
            changes: list[tuple[str, str, float]] = []  # (configmap, new address, sent at)
            period = 1.0 / tier.rate
            total = int(tier.rate * tier.seconds)

            def send(s: int, endpoints: list[dict[str, Any]], fresh: str) -> None:
                sent = time.monotonic()
                done(discovery.patch_namespaced_endpoint_slice(
                    f"svc-{s}-bench", NS, {"endpoints": endpoints}, _preload_content=False
                ))  # fmt: skip
                changes.append((f"gt-{s}", fresh, sent))

            t0 = time.monotonic()
            with ThreadPoolExecutor(8) as senders:  # one sender would not keep up at 100/s
                for k in range(total):
                    due = t0 + k * period
                    delay = due - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    s = k % n
                    fresh = address(s, serial[s])
                    serial[s] += 1
                    live[s][(k // n) % m] = fresh
                    senders.submit(send, s, slice_body(s, live[s])["endpoints"], fresh)
                    if k % 20 == 0:
                        sample_rss()
            churn_s = time.monotonic() - t0

            latencies: list[float] = []

            def all_seen() -> bool:
                with watcher.lock:
                    return all((c[0], c[1]) in watcher.seen_at for c in changes)

            with contextlib.suppress(WaitTimeout):  # what was not seen is reported, not waited on
                until(all_seen, timeout_s=60, interval_s=0.2)
            with watcher.lock:
                for cm, fresh, sent in changes:
                    seen = watcher.seen_at.get((cm, fresh))
                    if seen is not None:
                        latencies.append((seen - sent) * 1000)
            sample_rss()
            cpu_used = {name: round(cpu_s(p) - cpu_before[name], 1) for name, p in procs.items()}
            op_times, switches = proc.cpu_times(), proc.num_ctx_switches()
            end_profile()
            time.sleep(1)
            writes = operator_metric(metrics_port, "kuberesolver_operator_configmap_writes_total")

            # A rollout-like burst on one Service: changes as fast as the API takes them.
            burst_before = writes
            s = 0
            for k in range(BURST):
                fresh = address(s, serial[s])
                serial[s] += 1
                live[s][k % m] = fresh
                discovery.patch_namespaced_endpoint_slice(
                    f"svc-{s}-bench", NS, {"endpoints": slice_body(s, live[s])["endpoints"]}
                )
            want = set(live[s])

            def burst_published() -> bool:
                with watcher.lock:
                    return watcher.current.get(f"gt-{s}") == want

            with contextlib.suppress(WaitTimeout):
                until(burst_published, timeout_s=30, interval_s=0.1)
            time.sleep(1)
            burst_writes = (
                operator_metric(metrics_port, "kuberesolver_operator_configmap_writes_total")
                - burst_before
            )
            reconcile_count = operator_metric(
                metrics_port, "kuberesolver_operator_reconcile_seconds_count"
            )
        finally:
            watcher.stopping = True
            end_profile()
            op.stop()

        result = {
            "targets": n,
            "endpoints": n * m,
            "endpoints_per_target": m,
            "changes": len(changes),
            "changes_published": len(latencies),
            "churn_rate_per_s": round(len(changes) / churn_s, 2),
            "update_ms_p50": round(percentile(latencies, 50), 1),
            "update_ms_p99": round(percentile(latencies, 99), 1),
            "update_ms_max": round(max(latencies), 1) if latencies else None,
            "configmap_writes": int(writes - writes_before),
            "burst_changes": BURST,
            "burst_configmap_writes": int(burst_writes),
            "reconciles_total": int(reconcile_count),
            "operator_rss_mib": round(peak_rss / 2**20, 1),
            "apiserver_watches_opened": watches_with - watches_before,
            "initial_sync_s": round(initial_sync_s, 1),
            "churn_cpu_s": cpu_used,
            "cpu_ms_per_change": {
                name: round(used * 1000 / max(1, len(changes)), 2)
                for name, used in cpu_used.items()
            },
            "cores_needed_at_rate": round(
                sum(cpu_used.values()) / max(1, len(changes)) * tier.rate, 2
            ),
            "operator_cpu_s_user_system": [
                round(op_times.user - op_times_before.user, 1),
                round(op_times.system - op_times_before.system, 1),
            ],
            "operator_context_switches_per_change": round(
                (sum(switches) - sum(switches_before)) / max(1, len(changes)), 1
            ),
            "operator_idle_cores": round(idle_cores, 4),
            "operator_cores_at_100_per_s": round(
                cpu_used["operator"] / max(1, len(changes)) * 100, 3
            ),
            "sustained": len(changes) / churn_s >= 0.95 * tier.rate
            and len(latencies) == len(changes),
            "goal_update_ms_p99": tier.goal_update_ms_p99,
            "goal_operator_rss_mib": tier.goal_operator_rss_mib,
            "goal_initial_sync_s": tier.goal_initial_sync_s,
        }
        op.log_path.unlink(missing_ok=True)
        admin.close()
    return result


if __name__ == "__main__":
    main()
