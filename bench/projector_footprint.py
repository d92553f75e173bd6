"""The projector's footprint in a fresh venv: installed MiB, idle RSS, ``--help`` time.

    python bench/projector_footprint.py [--before=main] [--runs=15]

Installs ``kuberesolver[projector]`` from this checkout (and, with
``--before``, from that git revision, via ``git archive``) into fresh venvs.
``installed_mib`` is the venv's site-packages; ``rss_idle_mib`` is the
projector's resident memory while it retries an API server that refuses
connections (its loop and HTTP client loaded, nothing projected);
``help_ms`` is the median wall time of ``kuberesolver-projector --help``.
Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _size_mib(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def _measure(source: Path, work: Path, runs: int) -> dict[str, Any]:
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin/python"), "-m", "pip", "install", "-q", f"{source}[projector]"]
    subprocess.run(pip, check=True)
    site = next((venv / "lib").glob("python*/site-packages"))
    script = venv / "bin/kuberesolver-projector"
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([str(script), "--help"], check=True, capture_output=True)
        times.append((time.perf_counter() - start) * 1000)
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    kubeconfig = work / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "c",
                "clusters": [{"name": "k", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
            }
        )
    )
    proc = subprocess.Popen(
        [str(script), "--configmap=x", "--namespace=n", f"--dir={work / 'out'}",
         f"--kubeconfig={kubeconfig}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # idle once it has failed and is waiting to retry
            if "retrying" in line:
                break
        rss_kib = 0
        for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss_kib = int(line.split()[1])
    finally:
        proc.terminate()
        proc.wait(10)
    names = subprocess.run(
        [str(venv / "bin/python"), "-m", "pip", "list", "--format=json"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    packages = sorted(p["name"].lower() for p in json.loads(names))
    return {
        "installed_mib": round(_size_mib(site), 1),
        "rss_idle_mib": round(rss_kib / 1024, 1),
        "help_ms": round(statistics.median(times), 1),
        "grpc_installed": any(p.startswith("grpcio") for p in packages),
        "protobuf_installed": "protobuf" in packages,
        "kubernetes_installed": "kubernetes" in packages,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", default="", help="a git revision to measure too")
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.before:
            src = Path(tmp) / "before-src"
            src.mkdir()
            archive = subprocess.run(
                ["git", "-C", str(ROOT), "archive", args.before], check=True, capture_output=True
            ).stdout
            subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
            (Path(tmp) / "before").mkdir()
            result["before"] = _measure(src, Path(tmp) / "before", args.runs)
            print("before", result["before"], file=sys.stderr)
        (Path(tmp) / "after").mkdir()
        result["after"] = _measure(ROOT, Path(tmp) / "after", args.runs)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
