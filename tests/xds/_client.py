"""A plain grpcio client in its own process: ``python _client.py TARGET...``.

grpc reads its xDS bootstrap (``GRPC_XDS_BOOTSTRAP``) once per process, so each
bootstrap needs a process. It opens ``grpc.insecure_channel(target)`` for each
target, prints ``{"ready": true}``, then answers each stdin line ``INDEX N``
(make N unary calls on target INDEX) with one JSON line: the calls per backend
name, and the error that ended the batch early, if any.
"""

from __future__ import annotations

import functools
import json
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

import grpc

UNARY = "/kr.test.Echo/Unary"


def batch(call: Callable[[], bytes], n: int) -> dict[str, Any]:
    """``n`` calls counted per backend name; the first error ends the batch (a failing call
    waits 5 s)."""
    counts: Counter[str] = Counter()
    errors: list[str] = []
    for _ in range(n):
        try:
            counts[call().decode().split("|")[0]] += 1
        except grpc.RpcError as exc:
            errors.append(f"{exc.code().name}: {exc.details()}")
            break
    return {"counts": dict(counts), "errors": errors[:3]}


def serve(call: Callable[[int], bytes]) -> None:
    """Answer each stdin line ``INDEX N`` with one JSON line: ``batch`` on target INDEX."""
    for line in sys.stdin:
        index, n = (int(x) for x in line.split())
        print(json.dumps(batch(functools.partial(call, index), n)), flush=True)


def main() -> None:
    channels = [grpc.insecure_channel(t) for t in sys.argv[1:]]
    calls = [ch.unary_unary(UNARY) for ch in channels]
    print(json.dumps({"ready": True}), flush=True)
    serve(lambda index: calls[index](b"", timeout=5, wait_for_ready=True))
    for ch in channels:
        ch.close()


if __name__ == "__main__":
    main()
