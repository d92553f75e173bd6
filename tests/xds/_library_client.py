"""A kuberesolver client in its own process: ``python _library_client.py [--aio] TARGET...``.

Like ``_client.py`` (same protocol), but each channel is
``kuberesolver.insecure_channel(TARGET)`` (or ``kuberesolver.aio``'s) on a
``kubernetes:///`` target; the source (``KUBERESOLVER_SOURCE=operator``) and the
bootstrap come from the environment. After the ready line, one more line says
what each channel is and whether it has a snapshot (an operator-sourced one has none).
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import grpc

# run as a script: its own folder is on sys.path, and _client.py speaks the same protocol
from _client import UNARY, serve

import kuberesolver
import kuberesolver.aio


def describe(channels: list[Any]) -> None:
    snapshots: list[Any] = []
    for ch in channels:
        try:
            snapshots.append(ch.snapshot.revision)
        except LookupError as exc:
            snapshots.append(str(exc))
    print(json.dumps({"ready": True}), flush=True)
    print(json.dumps({
        "types": [f"{type(ch).__module__}.{type(ch).__name__}" for ch in channels],
        "snapshots": snapshots,
        "grpc": [isinstance(ch, grpc.Channel | grpc.aio.Channel) for ch in channels],
    }), flush=True)  # fmt: skip


async def main_aio(targets: list[str]) -> None:
    channels = [kuberesolver.aio.insecure_channel(t) for t in targets]
    calls = [ch.unary_unary(UNARY) for ch in channels]
    describe(channels)

    async def call(index: int) -> bytes:
        reply: bytes = await calls[index](b"", timeout=5, wait_for_ready=True)
        return reply

    loop = asyncio.get_running_loop()
    # stdin is read on a thread; each call runs on this loop
    await loop.run_in_executor(
        None, serve, lambda index: asyncio.run_coroutine_threadsafe(call(index), loop).result()
    )
    for ch in channels:
        await ch.close()


def main() -> None:
    if sys.argv[1:2] == ["--aio"]:
        asyncio.run(main_aio(sys.argv[2:]))
        return
    channels = [kuberesolver.insecure_channel(t) for t in sys.argv[1:]]
    calls = [ch.unary_unary(UNARY) for ch in channels]
    describe(channels)
    serve(lambda index: calls[index](b"", timeout=5, wait_for_ready=True))
    for ch in channels:
        ch.close()


if __name__ == "__main__":
    main()
