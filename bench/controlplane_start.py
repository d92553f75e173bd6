"""Warm start and stop of the test control plane (binaries already cached).

Prints one JSON object on its last line: the median and max seconds from
nothing to a ready apiserver (etcd, kube-apiserver, controller-manager) over
a few runs, and the seconds to stop. Goal: warm start under 30 s.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from testenv import ControlPlane, ensure_binaries, versions

RUNS = 3


def main() -> None:
    bins = ensure_binaries()
    starts, stops = [], []
    for _ in range(RUNS):
        cp = ControlPlane(bin_dir=bins)
        t0 = time.monotonic()
        cp.start()
        t1 = time.monotonic()
        cp.stop()
        starts.append(t1 - t0)
        stops.append(time.monotonic() - t1)
    v = versions()
    print(
        json.dumps(
            {
                "kubernetes": v["KUBERNETES_VERSION"],
                "etcd": v["ETCD_VERSION"],
                "runs": RUNS,
                "warm_start_s_median": round(statistics.median(starts), 2),
                "warm_start_s_max": round(max(starts), 2),
                "stop_s_median": round(statistics.median(stops), 2),
                "goal_warm_start_s": 30,
            }
        )
    )


if __name__ == "__main__":
    main()
