"""Endpoint churn under steady load: our channel against "a new grpc channel per update".

10 backends on 127.0.0.1-10 (in a separate process). Starting from 5 of them,
100 snapshot updates in kubelet's atomic layout (``..data`` swap), each adding
or removing one endpoint, while ``--threads`` client threads call back to back.
Both modes watch the same files with the same watcher; they differ only in how
an update reaches the calls:

- ``ours``: kuberesolver's channel (the in-process xDS server pushes the new
  ClusterLoadAssignment to grpc's own balancer);
- ``naive``: a new ``ipv4:`` round_robin channel per update, swapped in, the old
  one closed 1 s later (so its in-flight calls can finish).

Reported per mode:

- ``reconnects_of_unchanged``: connections counted at the servers beyond one per
  time an endpoint was (re)added (goal 0);
- ``failed_rpcs`` (goal 0);
- ``apply_ms_p50`` / ``apply_ms_p99``: from just before the swap to the first
  call answered by an added endpoint, or to the start of the last call picked
  for a removed one (goal p99 at most 50 ms).

Last line: one JSON object (json.dumps in _common.emit).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from _common import UNARY, Fleet, emit, options, percentile, publish

HOSTS = [f"127.0.0.{i}" for i in range(1, 11)]


def _plan(seed: int, updates: int, start: int) -> list[tuple[str, str]]:
    """[(op, host)]: add or remove one endpoint per update, keeping 2..9 endpoints."""
    rng = random.Random(seed)
    present = set(HOSTS[:start])
    plan = []
    for _ in range(updates):
        absent = [h for h in HOSTS if h not in present]
        if len(present) <= 2 or (len(present) < 9 and rng.random() < 0.5):
            host = rng.choice(absent)
            present.add(host)
            plan.append(("add", host))
        else:
            host = rng.choice(sorted(present))
            present.remove(host)
            plan.append(("remove", host))
    return plan


class Load:
    """Threads calling back to back through ``get_call()``; every call is recorded."""

    def __init__(self, get_call: Callable[[], Any], threads: int) -> None:
        self._get_call = get_call
        self._stop = threading.Event()
        self.records: list[list[tuple[float, float, str | None]]] = [[] for _ in range(threads)]
        self.errors: list[str] = []
        self._threads = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)
        ]

    def _run(self, i: int) -> None:
        out = self.records[i]
        while not self._stop.is_set():
            t0 = time.perf_counter()
            try:
                name: str | None = self._get_call()(b"", timeout=5).decode()
            except grpc.RpcError as exc:
                name = None
                self.errors.append(f"{exc.code()}: {exc.details()}")
            except ValueError as exc:  # a closed channel (naive mode's swap race)
                name = None
                self.errors.append(str(exc))
            out.append((t0, time.perf_counter(), name))

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(10)

    def all(self) -> list[tuple[float, float, str | None]]:
        return sorted(r for rs in self.records for r in rs)


def _apply_ms(
    records: list[tuple[float, float, str | None]], swaps: list[tuple[float, str, str]]
) -> tuple[list[float], list[float]]:
    adds: list[float] = []
    removes: list[float] = []
    for i, (t0, op, host) in enumerate(swaps):
        # until the same endpoint changes again
        t1 = next((t for t, _, h in swaps[i + 1 :] if h == host), float("inf"))
        if op == "add":
            ends = [end for start, end, name in records if name == host and t0 <= start < t1]
            adds.append(((min(ends) - t0) * 1000) if ends else float("inf"))
        else:
            starts = [start for start, _, name in records if name == host and t0 <= start < t1]
            removes.append(((max(starts) - t0) * 1000) if starts else 0.0)
    return adds, removes


def _run_mode(
    mode: str,
    fleet: Fleet,
    root: Path,
    plan: list[tuple[str, str]],
    args: argparse.Namespace,
) -> dict[str, Any]:
    import kuberesolver
    from kuberesolver.client.settings import resolve
    from kuberesolver.client.sources.file import SnapshotWatcher
    from kuberesolver.client.target import parse_target
    from kuberesolver.core.snapshot import ENDPOINTS_KEY, load

    directory = root / "bench.ns"
    present = list(HOSTS[: args.start])
    additions = dict.fromkeys(HOSTS, 0)
    for h in present:
        additions[h] += 1
    revision = 1
    publish(directory, [(h, fleet.ports[h]) for h in present], revision)
    fleet.reset()

    closers: list[threading.Timer] = []
    watcher: SnapshotWatcher | None = None
    if mode == "ours":
        channel = kuberesolver.insecure_channel("kubernetes:///bench.ns:grpc", snapshot_dir=root)
        call = channel.unary_unary(UNARY)

        def get_call() -> Any:
            return call
    else:
        config = '{"loadBalancingConfig": [{"round_robin": {}}]}'
        current: dict[str, Any] = {}

        def swap(snapshot: Any) -> None:
            target = "ipv4:" + ",".join(e.hostport for e in snapshot.ready_endpoints)
            new = grpc.insecure_channel(target, options=[("grpc.service_config", config)])
            old = current.get("channel")
            current["channel"], current["call"] = new, new.unary_unary(UNARY)
            if old is not None:
                timer = threading.Timer(1.0, old.close)
                timer.start()
                closers.append(timer)

        swap(load(directory / ENDPOINTS_KEY))
        settings = resolve()  # the same watch settings as our channel
        watcher = SnapshotWatcher(
            directory,
            parse_target("kubernetes:///bench.ns:grpc"),
            load(directory / ENDPOINTS_KEY),
            swap,
            debounce_ms=settings.debounce_ms,
            poll_interval_ms=settings.poll_interval_ms,
        )
        watcher.start()

        def get_call() -> Any:
            return current["call"]

    for _ in range(200):  # warm: every initial endpoint connected
        get_call()(b"", timeout=5)

    swaps: list[tuple[float, str, str]] = []
    with Load(get_call, args.threads) as load:
        time.sleep(0.3)
        for op, host in plan:
            if op == "add":
                present.append(host)
                additions[host] += 1
            else:
                present.remove(host)
            revision += 1
            t0 = time.perf_counter()
            publish(directory, [(h, fleet.ports[h]) for h in present], revision)
            swaps.append((t0, op, host))
            time.sleep(args.interval_ms / 1000)
        time.sleep(0.3)

    if watcher is not None:
        watcher.stop()
        for timer in closers:
            timer.join()
        current["channel"].close()
    else:
        channel.close()
    stats = fleet.stats()
    reconnects = sum(max(0, stats[h]["connections"] - additions[h]) for h in HOSTS)
    records = load.all()
    adds, removes = _apply_ms(records, swaps)
    apply = adds + removes
    return {
        "reconnects_of_unchanged": reconnects,
        "connections": sum(s["connections"] for s in stats.values()),
        "failed_rpcs": len(load.errors),
        "rpcs": len(records),
        "apply_ms_p50": round(percentile(apply, 50), 2),
        "apply_ms_p99": round(percentile(apply, 99), 2),
        "apply_ms_max": round(max(apply), 2),
        "add_ms_p99": round(percentile(adds, 99), 2),
        "remove_ms_p99": round(percentile(removes, 99), 2),
        "first_errors": sorted(set(load.errors))[:3],
    }


def main() -> None:
    args = options(
        __doc__,
        updates=(int, 100),
        interval_ms=(float, 100),
        threads=(int, 4),
        start=(int, 5),
        seed=(int, 7),
    )
    plan = _plan(args.seed, args.updates, args.start)
    results: dict[str, Any] = {}
    with Fleet(HOSTS, workers=8) as fleet, tempfile.TemporaryDirectory() as tmp:
        for mode in ("ours", "naive"):
            results[mode] = _run_mode(mode, fleet, Path(tmp) / mode, plan, args)
            print(mode, results[mode], file=sys.stderr)
    ours, naive = results["ours"], results["naive"]
    emit(
        {
            "bench": "client_churn",
            "updates": args.updates,
            "endpoints": len(HOSTS),
            "interval_ms": args.interval_ms,
            "threads": args.threads,
            "reconnects_of_unchanged": ours["reconnects_of_unchanged"],
            "failed_rpcs": ours["failed_rpcs"],
            "apply_ms_p50": ours["apply_ms_p50"],
            "apply_ms_p99": ours["apply_ms_p99"],
            "rpcs": ours["rpcs"],
            "naive_reconnects_of_unchanged": naive["reconnects_of_unchanged"],
            "naive_failed_rpcs": naive["failed_rpcs"],
            "naive_apply_ms_p50": naive["apply_ms_p50"],
            "naive_apply_ms_p99": naive["apply_ms_p99"],
            "naive_rpcs": naive["rpcs"],
            "ours_detail": ours,
            "naive_detail": naive,
        }
    )


if __name__ == "__main__":
    main()
