"""A kuberesolver client in its own process: ``python _library_client.py [--aio] TARGET...``.

Like ``_client.py`` (same protocol), but each channel is
``kuberesolver.insecure_channel(TARGET)`` (or ``kuberesolver.aio``'s) on a
``kubernetes:///`` target; the source (``KUBERESOLVER_SOURCE=operator``) and the
bootstrap come from the environment. The ready line also says whether a channel
has a snapshot (an operator-sourced one has none).
"""

from __future__ import annotations

import json
import sys
from collections import Counter

import grpc

import kuberesolver

UNARY = "/kr.test.Echo/Unary"


def main() -> None:
    channels = [kuberesolver.insecure_channel(t) for t in sys.argv[1:]]
    calls = [ch.unary_unary(UNARY) for ch in channels]
    snapshots = []
    for ch in channels:
        try:
            snapshots.append(ch.snapshot.revision)
        except LookupError as exc:
            snapshots.append(str(exc))
    print(json.dumps({"ready": True}), flush=True)
    print(
        json.dumps(
            {
                "types": [type(ch).__name__ for ch in channels],
                "snapshots": snapshots,
                "grpc": [isinstance(ch, grpc.Channel) for ch in channels],
            }
        ),
        flush=True,
    )
    for line in sys.stdin:
        index, n = (int(x) for x in line.split())
        counts: Counter[str] = Counter()
        errors: list[str] = []
        for _ in range(n):
            try:
                reply = calls[index](b"", timeout=5, wait_for_ready=True)
                counts[reply.decode().split("|")[0]] += 1
            except grpc.RpcError as exc:  # stop at the first: a failing call waits 5 s
                errors.append(f"{exc.code().name}: {exc.details()}")
                break
        print(json.dumps({"counts": dict(counts), "errors": errors[:3]}), flush=True)
    for ch in channels:
        ch.close()


if __name__ == "__main__":
    main()
