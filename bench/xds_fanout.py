"""The operator's xDS fan-out: an EndpointSlice change to every subscribed client's ACK.

A real control plane; the operator as its own process, under its
own RBAC, serving ADS (``KUBERESOLVER_XDS_ADDRESS``, plaintext, no token
check) beside its ConfigMaps. The world is bench/operator_scale.py's: 200
GrpcTargets over 200 selectorless Services, each with one EndpointSlice of 50
endpoints that the bench writes. 1,000 simulated xDS clients (5 streams per
target, bench/_xds_fanout_clients.py: raw ADS streams in one asyncio process,
subscribing and ACKing as grpc does) hold the Listener, Cluster and CLA of
their target.

Churn: ``--rate`` slice patches per second (20) for ``--seconds`` (30),
round-robin over the Services, each swapping one endpoint for a fresh address
(so no change is superseded before it is delivered). A change's latency runs
from sending its patch to the moment the last of its target's streams has
received a CLA holding the new address and sent the ACK.

Baseline, same run (``--standalone 1``, the default): the same streams and
churn against the ADS server alone, in this process, fed by ``XdsStore.put``
(no apiserver, no watch, no planning); ``ratio_p99`` is operator / standalone.

Last line: ``p50_ms``, ``p99_ms``, ``operator_rss_mib`` (the operator
process's peak RSS, sampled through the sync and churn), ``operator_cpu_s``
(its CPU seconds from the first patch to the last delivery), ``streams``,
``targets``, ``changes``, ``missing`` (deliveries that never came within
30 s), ``initial_sync_s`` (operator start to every stream holding its first CLA),
``first_ack_p99_ms`` (to the first stream's ACK: the rest is fan-out),
``patch_p99_ms`` (the patch's round trip: the apiserver's share), ``load_1m``
(the machine's load average at the end: this bench shares its cores),
``goals`` (``p99_ms`` <= 100 at 20 changes/s, ``operator_rss_mib`` <= 300, and
whether both were ``met``), ``standalone`` and ``ratio_p99``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil
from _common import emit, options, percentile
from kubernetes import client
from operator_scale import NS, address, cpu_s, create_world, done, slice_body

from kuberesolver.core.snapshot import Endpoint, Snapshot, TargetRef
from kuberesolver.xds.ads_aio import AdsServer
from kuberesolver.xds.bootstrap import DEFAULT_AUTHORITY
from kuberesolver.xds.store import XdsStore
from testenv import ControlPlane
from testenv.controlplane import free_port
from testenv.kube import api_client, apply, apply_cluster_rbac, service_account_token
from testenv.operator_process import OperatorProcess
from testenv.wait import WaitTimeout, until

ROOT = Path(__file__).resolve().parent.parent
CLIENTS = Path(__file__).with_name("_xds_fanout_clients.py")
GOALS = {"p99_ms": 100, "operator_rss_mib": 300}


class Clients:
    """The simulated ADS streams, in their own process; returns once every stream has synced."""

    def __init__(self, uri: str, streams: int, targets: int) -> None:
        self.streams, self.targets = streams, targets
        self.proc = subprocess.Popen(
            [sys.executable, str(CLIENTS), uri, DEFAULT_AUTHORITY, str(streams), str(targets)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        if self._line() != "ready":
            raise RuntimeError("the simulated xDS clients did not sync")

    def _line(self, ask: str | None = None) -> str:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        if ask is not None:
            self.proc.stdin.write(ask + "\n")
            self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def measure(self, sent: dict[str, float]) -> dict[str, Any]:
        """Wait (up to 30 s) for every change at every stream of its target; the latencies."""
        n, k = self.targets, self.streams
        expected = {key: k // n + (int(key.split(":")[0]) < k % n) for key in sent}
        with contextlib.suppress(WaitTimeout):
            until(lambda: int(self._line("count")) >= sum(expected.values()), timeout_s=30)
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        seen: dict[str, list[float]] = json.loads(self._line())
        self.proc.wait(30)
        latencies, first, missing = [], [], 0
        for key, at in sent.items():
            acks = seen.get(key, [])
            missing += max(0, expected[key] - len(acks))
            if acks:
                first.append((min(acks) - at) * 1000)
            if len(acks) >= expected[key]:
                latencies.append((max(acks) - at) * 1000)
        return {
            "p50_ms": round(percentile(latencies, 50), 1),
            "p99_ms": round(percentile(latencies, 99), 1),
            "first_ack_p99_ms": round(percentile(first, 99), 1),
            "changes": len(sent),
            "missing": missing,
        }


def initial(targets: int, endpoints: int) -> list[list[str]]:
    return [[address(s, i) for i in range(endpoints)] for s in range(targets)]


def churn(
    change: Callable[[int, list[str]], None],
    live: list[list[str]],
    rate: float,
    seconds: float,
    tick: Callable[[], None] = lambda: None,
) -> dict[str, float]:
    """``rate`` changes/s, round-robin; when each was sent, keyed ``<target>:<fresh address>``."""
    n, m = len(live), len(live[0])
    serial = [m] * n
    sent: dict[str, float] = {}

    def one(key: str, s: int, addresses: list[str]) -> None:
        sent[key] = time.monotonic()
        change(s, addresses)

    pending: list[Future[None]] = []
    t0 = time.monotonic()
    with ThreadPoolExecutor(8) as senders:
        for k in range(int(rate * seconds)):
            time.sleep(max(0.0, t0 + k / rate - time.monotonic()))
            s = k % n
            fresh = address(s, serial[s])
            serial[s] += 1
            live[s][(k // n) % m] = fresh
            pending.append(senders.submit(one, f"{s}:{fresh}", s, list(live[s])))
            if k % 20 == 0:
                tick()
    for f in pending:
        f.result()
    return sent


def standalone(
    streams: int, targets: int, endpoints: int, rate: float, seconds: float
) -> dict[str, Any]:
    """The baseline: the ADS server alone, in this process, fed by ``XdsStore.put``."""
    live, revisions = initial(targets, endpoints), itertools.count(1)
    store = XdsStore(DEFAULT_AUTHORITY)

    def put(s: int, addresses: list[str]) -> None:
        ref = TargetRef(f"svc-{s}", NS, "grpc", "grpc", 50051)
        store.put(
            (NS, f"gt-{s}"),
            Snapshot(ref, next(revisions), tuple(Endpoint(a, 50051) for a in addresses)),
        )

    for s in range(targets):
        put(s, live[s])
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    server = AdsServer(store)
    port = asyncio.run_coroutine_threadsafe(server.start("127.0.0.1:0"), loop).result(30)
    try:
        clients = Clients(f"127.0.0.1:{port}", streams, targets)
        me = psutil.Process()
        cpu0 = cpu_s(me)
        result = clients.measure(churn(put, live, rate, seconds))
        result["server_cpu_s"] = round(cpu_s(me) - cpu0, 2)
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(0), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
    return result


def through_operator(
    streams: int, targets: int, endpoints: int, rate: float, seconds: float
) -> dict[str, Any]:
    """The real path: slice patch -> apiserver -> the operator's watch, plan and ADS server."""
    live = initial(targets, endpoints)
    with ControlPlane() as cp:
        admin = api_client(cp.admin_kubeconfig)
        apply(admin, ROOT / "crds", ROOT / "manifests/namespace.yaml", ROOT / "manifests/rbac.yaml")
        # The feed's Pod watch.
        apply_cluster_rbac(admin, ROOT / "manifests/optional/xds-pod-readiness")
        token = service_account_token(admin, "kuberesolver-system", "kuberesolver-operator")
        client.CoreV1Api(admin).create_namespace({"metadata": {"name": NS}})
        create_world(admin, targets, endpoints, live)
        discovery = client.DiscoveryV1Api(admin)
        xds = f"127.0.0.1:{free_port()}"
        op = OperatorProcess(
            cp.token_kubeconfig("operator", token, "kuberesolver-system"),
            {"KUBERESOLVER_XDS_ADDRESS": xds},  # the operator's default write budget
            name="xds-fanout",
            quiet=True,
        )
        t0 = time.monotonic()
        op.start()
        assert op.popen is not None
        proc = psutil.Process(op.popen.pid)
        peak = [0]

        def tick() -> None:
            peak[0] = max(peak[0], proc.memory_info().rss)

        answered: list[float] = []  # the apiserver's own share: the patch's round trip

        def patch(s: int, addresses: list[str]) -> None:
            t = time.monotonic()
            done(discovery.patch_namespaced_endpoint_slice(
                f"svc-{s}-bench", NS, {"endpoints": slice_body(s, addresses)["endpoints"]},
                _preload_content=False,
            ))  # fmt: skip
            answered.append((time.monotonic() - t) * 1000)

        try:
            clients = Clients(xds, streams, targets)
            initial_sync_s = time.monotonic() - t0
            tick()
            print(
                f"synced in {initial_sync_s:.1f} s; churn {rate}/s for {seconds} s", file=sys.stderr
            )
            cpu0 = cpu_s(proc)
            result = clients.measure(churn(patch, live, rate, seconds, tick))
            tick()
            result |= {
                "operator_cpu_s": round(cpu_s(proc) - cpu0, 2),
                "operator_rss_mib": round(peak[0] / 2**20, 1),
                "initial_sync_s": round(initial_sync_s, 1),
                "patch_p99_ms": round(percentile(answered, 99), 1),
                "load_1m": round(psutil.getloadavg()[0], 1),
            }
        except Exception:
            print(op.log_tail(), file=sys.stderr)
            raise
        finally:
            op.stop()
        op.log_path.unlink(missing_ok=True)
        admin.close()
    return result


def main() -> None:
    args = options(__doc__, streams=(int, 1000), targets=(int, 200), endpoints=(int, 50),
                   rate=(float, 20.0), seconds=(float, 30.0), standalone=(int, 1))  # fmt: skip
    shape = (args.streams, args.targets, args.endpoints, args.rate, args.seconds)
    base = standalone(*shape) if args.standalone else None
    if base is not None:
        print(f"standalone: {json.dumps(base)}", file=sys.stderr)
    result = through_operator(*shape)
    met = (
        result["p99_ms"] <= GOALS["p99_ms"]
        and result["operator_rss_mib"] <= GOALS["operator_rss_mib"]
    )
    result |= {
        "streams": args.streams,
        "targets": args.targets,
        "endpoints_per_target": args.endpoints,
        "rate_per_s": args.rate,
        "goals": {**GOALS, "met": met and result["missing"] == 0},
    }
    if base is not None:
        result["standalone"] = base
        result["ratio_p99"] = round(result["p99_ms"] / max(base["p99_ms"], 0.1), 2)
    emit(result)


if __name__ == "__main__":
    main()
