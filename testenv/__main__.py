"""Command line: ``python -m testenv build`` or ``python -m testenv up [--dir DIR]``."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path

from testenv import ControlPlane, ensure_binaries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testenv", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="build the binaries if missing; print their directory")
    up = sub.add_parser("up", help="run the control plane until interrupted")
    up.add_argument("--dir", type=Path, help="work directory to keep (default: a temporary one)")
    args = parser.parse_args(argv)

    if args.command == "build":
        print(ensure_binaries())
        return 0

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    start = time.monotonic()
    with ControlPlane(workdir=args.dir) as cp:
        print(f"control plane ready in {time.monotonic() - start:.1f} s at {cp.server}")
        print(f"export KUBECONFIG={cp.admin_kubeconfig}", flush=True)
        stop.wait()
    print("control plane stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
