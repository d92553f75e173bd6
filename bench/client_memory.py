"""Memory given back: a client that goes from a few endpoints to 100,000 and back.

One channel follows a snapshot of 3 endpoints (the baseline), then one of
``--endpoints`` (default 100,000; not ready, so grpc opens no connection to
them, but every layer holds them: the file, the snapshot, the xDS resource and
grpc's own copy), then 3 again. After each step we wait until grpc's xDS
client accepted the revision, collect garbage and read the RSS.

The last line is one JSON object: the RSS at each step (MiB), and the ratios
``after_over_baseline`` (1.0 = everything given back) and ``returned``
(the share of the growth given back).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import sys
import tempfile
import time
from pathlib import Path

import psutil
from _common import emit, publish  # type: ignore[import-not-found]  # emit: the last line, one json object


def _rss_mib() -> float:
    gc.collect()
    return float(psutil.Process().memory_info().rss) / 2**20


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--endpoints", type=int, default=100_000)
    args = parser.parse_args(argv)

    import kuberesolver
    from kuberesolver.core.atomic_writer import write_atomic
    from kuberesolver.core.snapshot import ENDPOINTS_KEY
    from testenv.wait import until

    few = [(f"127.0.0.{i}", 50051) for i in (2, 3, 4)]
    many = [
        (f"127.{1 + i // 65536}.{i // 256 % 256}.{i % 256}", 50051) for i in range(args.endpoints)
    ]

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        directory = root / "bench.ns"
        publish(directory, few, 1)
        with kuberesolver.insecure_channel("kubernetes:///bench.ns:grpc", snapshot_dir=root) as ch:
            ch.subscribe(lambda _state: None, try_to_connect=True)  # grpc subscribes to xDS

            def accepted(revision: int) -> bool:
                return ch.lease.accepted_revision == revision

            until(lambda: accepted(1), timeout_s=60, message="revision 1 accepted")
            baseline = _rss_mib()

            started = time.perf_counter()
            write_atomic(directory, {ENDPOINTS_KEY: _many(many, 2)})
            del many  # the benchmark's own copy
            until(lambda: accepted(2), timeout_s=300, interval_s=0.05, message="revision 2")
            grow_s = time.perf_counter() - started
            peak = _rss_mib()

            from kuberesolver.client import memory as _memory

            trims = _memory.given_back
            started = time.perf_counter()
            publish(directory, few, 3)
            until(lambda: accepted(3), timeout_s=300, interval_s=0.05, message="revision 3")
            shrink_s = time.perf_counter() - started
            # the memory is given back on a thread of its own, just after grpc accepted
            with contextlib.suppress(TimeoutError):  # not given back: the figures say so
                until(lambda: _memory.given_back > trims, timeout_s=30, interval_s=0.05)
            after = _rss_mib()
    emit(
        {
            "bench": "client_memory",
            "endpoints": args.endpoints,
            "rss_baseline_mib": round(baseline, 1),
            "rss_peak_mib": round(peak, 1),
            "rss_after_mib": round(after, 1),
            "after_over_baseline": round(after / baseline, 3),
            "given_back": _memory.given_back > trims,
            "returned": round((peak - after) / max(peak - baseline, 1e-9), 3),
            "grow_s": round(grow_s, 2),
            "shrink_s": round(shrink_s, 2),
        }
    )


def _many(endpoints: list[tuple[str, int]], revision: int) -> bytes:
    from kuberesolver.core.snapshot import Endpoint, Snapshot, TargetRef, encode

    snapshot = Snapshot(
        target=TargetRef("bench", "ns", "grpc", "grpc", 50051),
        revision=revision,
        endpoints=tuple(Endpoint(a, p, ready=False) for a, p in endpoints),
    )
    return encode(snapshot).encode()


if __name__ == "__main__":
    sys.exit(main())
