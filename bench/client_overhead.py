"""Per-call overhead: our channel against a raw grpc channel to the same single backend.

Unary RPCs per second, sync (one thread, back to back) and aio (``--concurrency``
calls in flight), in alternating rounds in the same run. Reports
``ratio_sync`` and ``ratio_aio``: ours over raw (goal: at least 0.95).
``cpu_ratio_*`` compare the client's CPU time per call (ours over raw: lower
is better), a figure less disturbed by other load on the machine.
Also the first-RPC latency of our channel (snapshot read, xDS resolution,
connect), and the import cost of kuberesolver. Last line: one JSON object
(json.dumps in _common.emit).

``--pick-metrics`` opens our channels with ``pick_metrics=True`` (picks per
endpoint, read from grpc's channelz when scraped) and also reports the time of
one Prometheus scrape (``scrape_ms``) and whether the counted picks match the
calls made (``picks_match``).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from _common import UNARY, Fleet, emit, median, publish


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _sync_round(call: Callable[..., Any], seconds: float) -> tuple[float, float]:
    """(calls per second, client CPU microseconds per call)."""
    n = 0
    cpu = _cpu()
    start = time.perf_counter()
    end = start + seconds
    while time.perf_counter() < end:
        for _ in range(10):
            call(b"")
        n += 10
    return n / (time.perf_counter() - start), (_cpu() - cpu) * 1e6 / n


async def _aio_round(
    call: Callable[..., Any], seconds: float, concurrency: int
) -> tuple[float, float]:
    cpu = _cpu()
    start = time.perf_counter()
    end = start + seconds
    counts = [0] * concurrency

    async def worker(i: int) -> None:
        while time.perf_counter() < end:
            await call(b"")
            counts[i] += 1

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    n = sum(counts)
    return n / (time.perf_counter() - start), (_cpu() - cpu) * 1e6 / n


def _ratio(data: dict[str, list[tuple[float, float]]], i: int = 0) -> float:
    """The median of the per-round ratios (adjacent rounds share the machine's load)."""
    pairs = zip(data["ours"], data["raw"], strict=True)
    return round(median(o[i] / r[i] for o, r in pairs), 3)


def _import_ms() -> float:
    timed = "import time; t=time.perf_counter(); import {}; print((time.perf_counter()-t)*1e3)"
    # kuberesolver itself is lazy: time what a client's first channel imports
    code, base = timed.format("kuberesolver.client.channel"), timed.format("grpc")
    ours = [float(subprocess.check_output([sys.executable, "-c", code])) for _ in range(3)]
    raw = [float(subprocess.check_output([sys.executable, "-c", base])) for _ in range(3)]
    return round(median(ours) - median(raw), 1)


_RSS = """
import sys, grpc, psutil
port, root, ours = sys.argv[1], sys.argv[2], sys.argv[3] == "ours"
if ours:
    import kuberesolver
    ch = kuberesolver.insecure_channel("kubernetes:///bench.ns:grpc", snapshot_dir=root)
else:
    ch = grpc.insecure_channel("127.0.0.1:" + port)
for _ in range(100):
    ch.unary_unary("{method}")(b"", timeout=10)
print(psutil.Process().memory_info().rss / 2**20)
ch.close()
"""


def _rss_mb(port: int, root: Path) -> float:
    """Resident memory of a process with one channel after 100 calls: ours minus raw."""
    code = _RSS.replace("{method}", UNARY)

    def run(mode: str) -> float:
        out = subprocess.check_output([sys.executable, "-c", code, str(port), str(root), mode])
        return float(out.decode().split()[-1])

    ours = [run("ours") for _ in range(3)]
    raw = [run("raw") for _ in range(3)]
    return round(median(ours) - median(raw), 1)


def _check_picks(call: Callable[..., Any], n: int = 1000) -> dict[str, Any]:
    """Scrape cost, and whether ``n`` more calls add exactly ``n`` picks."""
    import prometheus_client

    def total() -> tuple[float, float]:
        t = time.perf_counter()
        text = prometheus_client.generate_latest().decode()
        ms = (time.perf_counter() - t) * 1000
        lines = [x for x in text.splitlines() if x.startswith("kuberesolver_picks_total{")]
        return sum(float(x.rsplit(" ", 1)[1]) for x in lines), ms

    before, _ = total()
    for _ in range(n):
        call(b"")
    after, _ = total()
    scrapes = [total()[1] for _ in range(20)]
    return {"picks_match": after - before == n, "scrape_ms": round(median(scrapes), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--round-s", type=float, default=0.4)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-attempts", type=int, default=None)
    parser.add_argument("--pick-metrics", action="store_true")
    args = parser.parse_args()
    pick_metrics = args.pick_metrics or None
    registry = None
    if args.pick_metrics:  # the picks go to the registry the channel names: here the global one
        import prometheus_client

        registry = prometheus_client.REGISTRY

    import kuberesolver
    import kuberesolver.aio

    with Fleet(["127.0.0.1"], workers=8) as fleet, tempfile.TemporaryDirectory() as tmp:
        port = fleet.ports["127.0.0.1"]
        root = Path(tmp)
        publish(root / "bench.ns", [("127.0.0.1", port)], 1)
        target = "kubernetes:///bench.ns:grpc"

        t0 = time.perf_counter()
        ours = kuberesolver.insecure_channel(
            target,
            snapshot_dir=root,
            max_attempts=args.max_attempts,
            pick_metrics=pick_metrics,
            registry=registry,
        )
        ours.unary_unary(UNARY)(b"", timeout=10)
        first_rpc_ms = (time.perf_counter() - t0) * 1000
        raw = grpc.insecure_channel(f"127.0.0.1:{port}")
        calls = {"raw": raw.unary_unary(UNARY), "ours": ours.unary_unary(UNARY)}
        for call in calls.values():
            _sync_round(call, 0.3)
        sync: dict[str, list[tuple[float, float]]] = {"raw": [], "ours": []}
        for r in range(args.rounds):
            for name in ("raw", "ours") if r % 2 == 0 else ("ours", "raw"):
                sync[name].append(_sync_round(calls[name], args.round_s))
        picks = _check_picks(calls["ours"]) if args.pick_metrics else {}
        raw.close()
        ours.close()

        async def run_aio() -> dict[str, list[tuple[float, float]]]:
            a_ours = kuberesolver.aio.insecure_channel(
                target,
                snapshot_dir=root,
                max_attempts=args.max_attempts,
                pick_metrics=pick_metrics,
                registry=registry,
            )
            a_raw = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
            acalls = {"raw": a_raw.unary_unary(UNARY), "ours": a_ours.unary_unary(UNARY)}
            for call in acalls.values():
                await _aio_round(call, 0.3, args.concurrency)
            out: dict[str, list[tuple[float, float]]] = {"raw": [], "ours": []}
            for r in range(args.rounds):
                for name in ("raw", "ours") if r % 2 == 0 else ("ours", "raw"):
                    out[name].append(await _aio_round(acalls[name], args.round_s, args.concurrency))
            await a_raw.close()
            await a_ours.close()
            return out

        aio = asyncio.run(run_aio())
        rss_mb = _rss_mb(port, root)

    for label, data in (("sync", sync), ("aio", aio)):
        print(
            f"{label}: raw {[round(x) for x, _ in data['raw']]}",
            f"ours {[round(x) for x, _ in data['ours']]}",
            file=sys.stderr,
        )
    emit(
        {
            "bench": "client_overhead",
            "ratio_sync": _ratio(sync),
            "ratio_aio": _ratio(aio),
            "cpu_ratio_sync": _ratio(sync, 1),
            "cpu_ratio_aio": _ratio(aio, 1),
            "rps_sync_raw": round(median(x for x, _ in sync["raw"])),
            "rps_sync_ours": round(median(x for x, _ in sync["ours"])),
            "rps_aio_raw": round(median(x for x, _ in aio["raw"])),
            "rps_aio_ours": round(median(x for x, _ in aio["ours"])),
            "cpu_us_per_call_sync_raw": round(median(c for _, c in sync["raw"]), 1),
            "cpu_us_per_call_sync_ours": round(median(c for _, c in sync["ours"]), 1),
            "cpu_us_per_call_aio_raw": round(median(c for _, c in aio["raw"]), 1),
            "cpu_us_per_call_aio_ours": round(median(c for _, c in aio["ours"]), 1),
            "first_rpc_ms": round(first_rpc_ms, 1),
            "import_ms_over_grpc": _import_ms(),
            "rss_mb_over_grpc": rss_mb,
            "rounds": args.rounds,
            "round_s": args.round_s,
            "aio_concurrency": args.concurrency,
            "pick_metrics": args.pick_metrics,
            **picks,
        }
    )


if __name__ == "__main__":
    main()
