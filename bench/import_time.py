"""Import cost of ``import kuberesolver`` against ``import grpc``, in a clean virtualenv.

A fresh venv gets this project (its wheel, with the ``client`` extra) and nothing else; each
import runs in a new interpreter, interleaved, ``--runs`` times: ``grpc``,
``kuberesolver`` (the package alone) and ``kuberesolver.client.channel`` (what a
client's first channel loads: grpc, the xDS protos, the watcher). It prints
the medians, the differences and the ratios against grpc, and, from
``-X importtime``, the modules the channel loads beyond ``import grpc``, the
costliest first: where the extra time goes.

    python bench/import_time.py [--runs 15] [--python /path/to/venv/bin/python]

``--python`` reuses a venv that already has the project installed. The
interpreters run isolated (``-I``): the installed package is measured, never
a checkout in the working directory. The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import ROOT, emit  # emit: the last line, one json object

TIMER = "import time; t = time.perf_counter(); import {0}; print(time.perf_counter() - t)"


def clean_venv(directory: Path) -> Path:
    """A new venv with this project installed from a wheel with the client extra (no dev tools)."""
    subprocess.run([sys.executable, "-m", "venv", str(directory)], check=True)
    python = directory / "bin" / "python"
    wheels = directory / "wheels"
    subprocess.run(
        [str(python), "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(ROOT)],
        check=True,
    )
    (wheel,) = wheels.glob("kuberesolver-*.whl")
    subprocess.run([str(python), "-m", "pip", "install", "-q", f"{wheel}[client]"], check=True)
    return python


def import_seconds(python: Path, module: str) -> float:
    out = subprocess.run(
        [str(python), "-I", "-c", TIMER.format(module)], check=True, capture_output=True, text=True
    )
    return float(out.stdout.strip())


def import_profile(python: Path, module: str) -> dict[str, int]:
    """Module -> self time in microseconds, from ``-X importtime``."""
    out = subprocess.run(
        [str(python), "-I", "-X", "importtime", "-c", f"import {module}"],
        check=True,
        capture_output=True,
        text=True,
    )
    times: dict[str, int] = {}
    for line in out.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+\d+ \| (\s*)(\S+)", line)
        if match:
            times[match.group(3)] = int(match.group(1))
    return times


MODULES = ("grpc", "kuberesolver", "kuberesolver.client.channel")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--python", type=Path, help="a venv's python with the project installed")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kuberesolver-import-") as tmp:
        python = args.python or clean_venv(Path(tmp) / "venv")
        for module in MODULES:  # warm the file cache and .pyc files
            import_seconds(python, module)
        seconds: dict[str, list[float]] = {m: [] for m in MODULES}
        for _ in range(args.runs):  # interleaved, so load drifts hit all alike
            for module in MODULES:
                seconds[module].append(import_seconds(python, module))
        grpc_profile = import_profile(python, "grpc")
        channel_profile = import_profile(python, "kuberesolver.client.channel")
    extra = sorted(
        ((m, us) for m, us in channel_profile.items() if m not in grpc_profile),
        key=lambda item: -item[1],
    )
    by_package: dict[str, int] = {}
    for module, us in extra:
        by_package[module.split(".")[0]] = by_package.get(module.split(".")[0], 0) + us
    print("what kuberesolver.client.channel (a client's first channel) loads beyond grpc:")
    for module, us in extra[:12]:
        print(f"{us / 1000:8.1f} ms  {module}")
    ms = {m: statistics.median(v) * 1000 for m, v in seconds.items()}
    grpc_ms = ms["grpc"]
    emit(
        {
            "benchmark": "import_time",
            "runs": args.runs,
            "grpc_ms_p50": round(grpc_ms, 1),
            "kuberesolver_ms_p50": round(ms["kuberesolver"], 1),
            "channel_ms_p50": round(ms["kuberesolver.client.channel"], 1),
            "kuberesolver_over_grpc_ms": round(ms["kuberesolver"] - grpc_ms, 1),
            "channel_over_grpc_ms": round(ms["kuberesolver.client.channel"] - grpc_ms, 1),
            "kuberesolver_ratio_vs_grpc": round(ms["kuberesolver"] / grpc_ms, 2),
            "channel_ratio_vs_grpc": round(ms["kuberesolver.client.channel"] / grpc_ms, 2),
            "channel_extra_ms_by_package": {
                k: round(v / 1000, 1)
                for k, v in sorted(by_package.items(), key=lambda kv: -kv[1])[:6]
            },
        }
    )


if __name__ == "__main__":
    main()
