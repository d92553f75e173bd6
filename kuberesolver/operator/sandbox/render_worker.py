"""The render worker: a child process that renders templates under ``resource`` limits.

Started by :mod:`.render_pool` as ``python -I render_worker.py CPU_S MEMORY_MIB``.
It imports only the standard library and :mod:`kuberesolver.operator.logic.render`
(loaded from its file, with only the light kuberesolver.core beside it: kopf, the
kubernetes client and the rest of the operator stay unloaded, so startup stays cheap).

Frames on stdin and stdout: a 4-byte big-endian length, then UTF-8 JSON.

- worker → parent, once: ``{"ready": PID}``;
- parent → worker: ``{"templates": {KEY: SOURCE}, "context": {...}}``;
- worker → parent: ``{"key": KEY}`` before each template, then
  ``{"ok": {KEY: OUTPUT}}`` or ``{"error": {"reason": ..., "message": ..., "key": ...}}``.

Limits: the address space (``RLIMIT_AS``) is set once, after the imports;
before each render the CPU soft limit (``RLIMIT_CPU``) is set to the CPU used
so far plus ``CPU_S`` (rounded up to the next second: the kernel counts whole
seconds). Past it the kernel sends ``SIGXCPU``, whose default action ends the
process even inside a long C call; the parent reads the signal as a timeout.
A ``MemoryError`` is reported as ``RenderMemoryLimit`` and the worker exits
(its heap is not trusted any more). No core files are written.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import resource
import signal
import struct
import sys
from pathlib import Path
from types import ModuleType
from typing import IO, Any, Final

HEADER: Final = struct.Struct(">I")
MAX_FRAME_BYTES: Final = 64 * 1024 * 1024
EXIT_MEMORY: Final = 3
"""The exit status of a worker that ran out of address space."""
MEMORY_LIMIT: Final = "RenderMemoryLimit"


def read_frame(stream: IO[bytes]) -> Any:
    """The next frame's JSON value, or ``None`` at the end of the stream."""
    head = stream.read(HEADER.size)
    if len(head) < HEADER.size:
        return None
    (size,) = HEADER.unpack(head)
    if size > MAX_FRAME_BYTES:
        raise ValueError(f"frame of {size} bytes is too large")
    body = stream.read(size)
    if len(body) < size:
        return None
    return json.loads(body)


def write_frame(stream: IO[bytes], value: Any) -> None:
    body = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    stream.write(HEADER.pack(len(body)) + body)
    stream.flush()


def load_render() -> ModuleType:
    """:mod:`kuberesolver.operator.logic.render`, loaded from its file without its package."""
    path = Path(__file__).parent.parent / "logic" / "render.py"
    spec = importlib.util.spec_from_file_location("kuberesolver_render_sandbox", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def cpu_used_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def limit_cpu(budget_s: int) -> None:
    """Let the process use ``budget_s`` more seconds of CPU (at least; whole seconds)."""
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = math.ceil(cpu_used_s() + budget_s)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def serve(render: ModuleType, cpu_s: int, stdin: IO[bytes], stdout: IO[bytes]) -> int:
    def on_key(key: str) -> None:
        write_frame(stdout, {"key": key})

    while True:
        request = read_frame(stdin)
        if request is None:
            return 0
        limit_cpu(cpu_s)
        reply: dict[str, Any] | None = None
        try:
            reply = {
                "ok": render.render_templates(request["templates"], request["context"], on_key)
            }
        except MemoryError:
            pass
        except render.RenderError as exc:
            reply = {"error": {"reason": exc.reason, "message": str(exc), "key": exc.key}}
        del request
        if reply is None:  # out of memory: report it, then end (the heap is not trusted)
            write_frame(stdout, {"error": {"reason": MEMORY_LIMIT, "message": "", "key": None}})
            return EXIT_MEMORY
        write_frame(stdout, reply)
        del reply


def main(argv: list[str]) -> int:
    cpu_s, memory_mib = int(argv[1]), int(argv[2])
    signal.signal(signal.SIGXCPU, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when a worker ends
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    render = load_render()
    render.render_templates({"warm": "{{ x | tojson }}{% for i in range(1) %}{% endfor %}"},
                            {"x": [1]})  # fmt: skip
    limit = memory_mib * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but frames on the parent's pipe
    write_frame(stdout, {"ready": os.getpid()})
    try:
        return serve(render, cpu_s, stdin, stdout)
    except MemoryError:
        os._exit(EXIT_MEMORY)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
