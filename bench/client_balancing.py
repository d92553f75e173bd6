"""Load-aware balancing against round_robin when one backend is slow.

5 backends on 127.0.0.1-5 (separate process, 8 worker threads each); one of
them takes ``--slow-ms`` per call, the others ``--fast-ms``. Every backend
reports its load per call in the ORCA trailer (utilization: mean in-flight
calls over the last second / worker threads; and its request rate), which is
what weighted round robin needs. A closed loop of ``--concurrency`` aio calls
runs ``--seconds`` per policy after a warm-up (WRR's blackout period).

Reports p50/p90/p99 latency and the slow backend's share of calls per policy,
and ``p99_ratio`` = WRR p99 / round_robin p99 (lower is better). Last line:
one JSON object (json.dumps in _common.emit).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import UNARY, Fleet, emit, options, percentile, publish

HOSTS = [f"127.0.0.{i}" for i in range(1, 6)]
SLOW = HOSTS[0]


async def _measure(
    root: Path, policy: str, seconds: float, warmup_s: float, concurrency: int
) -> dict[str, Any]:
    import kuberesolver.aio

    async with kuberesolver.aio.insecure_channel(
        "kubernetes:///bench.ns:grpc", snapshot_dir=root, lb_policy=policy
    ) as ch:
        call = ch.unary_unary(UNARY)
        latencies: list[float] = []
        names: dict[str, int] = {}
        recording = False
        end = time.perf_counter() + warmup_s

        async def worker() -> None:
            while time.perf_counter() < end:
                t0 = time.perf_counter()
                name = (await call(b"", timeout=10)).decode()
                if recording:
                    latencies.append((time.perf_counter() - t0) * 1000)
                    names[name] = names.get(name, 0) + 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        recording = True
        end = time.perf_counter() + seconds
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    total = sum(names.values())
    return {
        "p50_ms": round(percentile(latencies, 50), 2),
        "p90_ms": round(percentile(latencies, 90), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "mean_ms": round(sum(latencies) / max(1, len(latencies)), 2),
        "rps": round(total / elapsed),
        "slow_share": round(names.get(SLOW, 0) / max(1, total), 4),
    }


def main() -> None:
    args = options(
        __doc__,
        seconds=(float, 10),
        warmup_s=(float, 4),
        concurrency=(int, 32),
        slow_ms=(float, 20),
        fast_ms=(float, 1),
    )
    results: dict[str, dict[str, Any]] = {}
    with Fleet(HOSTS, workers=8, report_load=True) as fleet, tempfile.TemporaryDirectory() as tmp:
        for host in HOSTS:
            fleet.set_delay(host, (args.slow_ms if host == SLOW else args.fast_ms) / 1000)
        root = Path(tmp)
        publish(root / "bench.ns", [(h, fleet.ports[h]) for h in HOSTS], 1)
        for policy in ("round_robin", "weighted_round_robin"):
            results[policy] = asyncio.run(
                _measure(root, policy, args.seconds, args.warmup_s, args.concurrency)
            )
            print(policy, results[policy], file=sys.stderr)
    rr, wrr = results["round_robin"], results["weighted_round_robin"]
    emit(
        {
            "bench": "client_balancing",
            "slow_ms": args.slow_ms,
            "fast_ms": args.fast_ms,
            "concurrency": args.concurrency,
            "round_robin": rr,
            "weighted_round_robin": wrr,
            "p99_ratio": round(wrr["p99_ms"] / rr["p99_ms"], 3),
            "p90_ratio": round(wrr["p90_ms"] / rr["p90_ms"], 3),
        }
    )


if __name__ == "__main__":
    main()
