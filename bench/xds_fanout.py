"""The operator-side xDS server's fan-out: a store change to every subscribed client's copy.

Server only, for now: the operator does not host the server yet, so the time
runs from ``XdsStore.put`` (where the operator will hand over a published
snapshot) to the arrival of the changed CLA at each subscribed stream, whose
ACK follows at once. The clients are simulated (raw ADS streams in one asyncio
process, subscribing as grpc does); the server runs in this process, on its
own loop, and is what the RSS and CPU figures measure.

Two phases in one run, the same churn (``--rate`` changes/s for
``--seconds``, round-robin over the targets, each one new endpoint address: no
change is superseded before it is delivered):

- ``baseline``: one stream per target (``--targets`` streams);
- ``fanout``: ``--streams`` streams over the same targets.

Last line: ``{"fanout": {...}, "baseline": {...}, "ratio_p99": fanout/baseline,
"goal_p99_ms": 100, "goal_rss_mib": 300}``, each phase with ``p50_ms``,
``p99_ms`` (per change, the slowest of its streams), ``missing`` (deliveries
that never came), ``server_rss_mib`` (this process's RSS at the phase's end;
the second phase runs in the same process) and ``server_cpu_s`` (this
process's CPU time during the churn).
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import emit, options, percentile
from kuberesolver.snapshot import Endpoint, Snapshot, TargetRef
from kuberesolver.xds_server.server import AdsServer
from kuberesolver.xds_server.store import XdsStore

AUTHORITY = "xds.bench.kuberesolver.io"
CLIENTS = Path(__file__).with_name("_xds_fanout_clients.py")
ENDPOINTS = 50  # per target, as in bench/operator_scale.py's tier 1


def snapshot(target: int, port: int, revision: int) -> Snapshot:
    """Target ``target``: a first endpoint whose port is the change's id, then 49 fixed ones."""
    first = Endpoint(f"10.1.{target // 250}.{target % 250 + 1}", port)
    rest = tuple(Endpoint(f"10.2.{target % 250}.{i + 1}", 8080) for i in range(ENDPOINTS - 1))
    return Snapshot(
        TargetRef(f"t{target}", "bench", "grpc", "grpc", 8080), revision, (first, *rest)
    )


def phase(streams: int, targets: int, rate: float, seconds: float) -> dict[str, Any]:
    store = XdsStore(AUTHORITY)
    for t in range(targets):
        store.put(("bench", f"t{t}"), snapshot(t, 1, 1))
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    server = AdsServer(store)
    port = asyncio.run_coroutine_threadsafe(server.start("127.0.0.1:0"), loop).result(30)
    clients = subprocess.Popen(
        [sys.executable, str(CLIENTS), f"127.0.0.1:{port}", AUTHORITY, str(streams), str(targets)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert clients.stdout is not None
    assert clients.stdin is not None
    if clients.stdout.readline().strip() != "ready":
        raise RuntimeError("the simulated clients did not sync")
    me = psutil.Process()
    cpu0 = sum(me.cpu_times()[:2])
    offset = random.Random(12).randrange(targets)
    puts: dict[str, float] = {}
    revisions = [1] * targets
    start = time.monotonic()
    for i in range(int(rate * seconds)):
        time.sleep(max(0.0, start + i / rate - time.monotonic()))  # pacing the load
        t = (offset + i) % targets
        revisions[t] += 1
        change_port = 10_000 + i
        puts[f"{t}:{change_port}"] = time.monotonic()
        store.put(("bench", f"t{t}"), snapshot(t, change_port, revisions[t]))
    expected = {key: streams // targets + (int(key.split(":")[0]) < streams % targets)
                for key in puts}  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _arrived(clients) < sum(expected.values()):
        time.sleep(0.05)
    cpu = sum(me.cpu_times()[:2]) - cpu0
    rss = me.memory_info().rss / 2**20
    clients.stdin.close()
    seen: dict[str, list[float]] = json.loads(clients.stdout.readline())
    clients.wait(30)
    asyncio.run_coroutine_threadsafe(server.stop(0), loop).result(30)
    loop.call_soon_threadsafe(loop.stop)
    latencies, missing = [], 0
    for key, put_at in puts.items():
        arrivals = seen.get(key, [])
        missing += max(0, expected[key] - len(arrivals))
        if arrivals:
            latencies.append((max(arrivals) - put_at) * 1000)
    return {
        "streams": streams,
        "targets": targets,
        "changes": len(puts),
        "p50_ms": round(percentile(latencies, 50), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "missing": missing,
        "server_rss_mib": round(rss, 1),
        "server_cpu_s": round(cpu, 2),
    }


def _arrived(clients: subprocess.Popen[str]) -> int:
    """How many changed CLAs the simulated clients have received so far."""
    assert clients.stdin is not None
    assert clients.stdout is not None
    clients.stdin.write("count\n")
    clients.stdin.flush()
    return int(clients.stdout.readline())


def main() -> None:
    args = options(__doc__, streams=(int, 1000), targets=(int, 200), rate=(float, 20.0),
                   seconds=(float, 15.0))  # fmt: skip
    baseline = phase(args.targets, args.targets, args.rate, args.seconds)
    print(f"baseline: {baseline}", file=sys.stderr)
    fanout = phase(args.streams, args.targets, args.rate, args.seconds)
    emit(
        {
            "fanout": fanout,
            "baseline": baseline,
            "ratio_p99": round(fanout["p99_ms"] / baseline["p99_ms"], 2),
            "goal_p99_ms": 100,
            "goal_rss_mib": 300,
            "path": "XdsStore.put -> CLA at each subscribed stream (no operator yet)",
        }
    )


if __name__ == "__main__":
    main()
