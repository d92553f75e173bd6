"""A pool of worker processes that render the GrpcTargets' templates: tenant code never runs here.

Jinja2's sandbox stops attribute escapes, not resource exhaustion: a template
can loop for hours without output, or build gigabytes in one filter call. So
every render happens in a child process (:mod:`.render_worker`, running the
sandboxed :func:`kuberesolver.operator.logic.render.render_templates`) with three limits per render:

- CPU time (``cpu_s``): the worker's ``RLIMIT_CPU``; the kernel ends it;
- address space (``memory_mib``): the worker's ``RLIMIT_AS``;
- wall-clock time (``timeout_ms``): enforced here; the worker is killed.

A breach raises :class:`~kuberesolver.operator.logic.render.RenderError` with reason
``RenderTimeout`` or ``RenderMemoryLimit``; the worker is killed and a fresh one started in the
background. Template errors keep their own reasons (``UndefinedVariable``,
``SandboxViolation``, ``TooLarge``, ...). The event loop only awaits pipes:
while one worker burns its budget, the others serve other targets, and a
GrpcTarget without templates never waits for a worker at all.

Workers are plain subprocesses (``python -I render_worker.py``) speaking
length-prefixed JSON on stdin and stdout: no ``fork()`` of this threaded
process, and a worker imports only jinja2 and the render module.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from kuberesolver.operator.logic.render import RenderError
from kuberesolver.operator.sandbox import render_worker
from kuberesolver.operator.settings import Settings

__all__ = ["RenderPool"]

_log = logging.getLogger("kuberesolver.operator.render")

WORKER_SCRIPT: Final = Path(render_worker.__file__)
MAX_REPLY_BYTES: Final = 16 * 1024 * 1024
"""A reply can hold at most 1 MiB of output (escaped in JSON); a bigger frame is a broken worker."""
SPAWN_TIMEOUT_S: Final = 60.0


class _Broken(Exception):
    """The worker cannot be trusted any more (it died, hung, or said something odd)."""


class _Worker:
    """One worker process and its pipes."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.healthy = True
        self.key: str | None = None  # the template being rendered, as the worker last said

    @property
    def alive(self) -> bool:
        """Not exited: asyncio may not have reaped it yet, so ask /proc too."""
        if self.proc.returncode is not None:
            return False
        try:
            with open(f"/proc/{self.pid}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except FileNotFoundError:
            return not os.path.isdir("/proc/self")  # reaped already, unless there is no /proc
        except (OSError, IndexError):
            return True
        return state not in (b"Z", b"X")

    async def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        head = await self.proc.stdout.readexactly(render_worker.HEADER.size)
        (size,) = render_worker.HEADER.unpack(head)
        if size > MAX_REPLY_BYTES:
            raise _Broken(f"a reply of {size} bytes")
        value = json.loads(await self.proc.stdout.readexactly(size))
        if not isinstance(value, dict):
            raise _Broken("a reply that is not an object")
        return value

    async def exchange(self, request: bytes) -> dict[str, Any]:
        """Send one request; the final reply (progress frames update :attr:`key`)."""
        assert self.proc.stdin is not None
        self.key = None
        self.proc.stdin.write(request)
        await self.proc.stdin.drain()
        while True:
            reply = await self.read()
            if "key" in reply:
                self.key = str(reply["key"])
                continue
            return reply

    def kill(self) -> None:
        """SIGKILL, without ``Popen.poll()``: that could reap the child under asyncio's watcher."""
        self.healthy = False
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)


class RenderPool:
    """Up to ``workers`` render processes; :meth:`render` waits for a free one.

    ``close()`` is idempotent (it kills the workers; :meth:`aclose` also waits
    for them to exit); the pool is an async context manager that starts its
    workers on entry.
    """

    def __init__(
        self,
        workers: int = 2,
        *,
        cpu_s: int = 2,
        memory_mib: int = 256,
        timeout_ms: int = 5000,
        python: str = sys.executable,
    ) -> None:
        if workers < 1:
            raise ValueError("a render pool needs at least one worker")
        self.workers = workers
        self.cpu_s = cpu_s
        self.memory_mib = memory_mib
        self.timeout_ms = timeout_ms
        self._argv = (python, "-I", str(WORKER_SCRIPT), str(cpu_s), str(memory_mib))
        self._slots = asyncio.Semaphore(workers)
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._dying: list[_Worker] = []  # killed, not yet waited for
        self._closed = False
        self.spawned = 0
        """How many workers were started so far (a replaced worker counts again)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> RenderPool:
        return cls(
            settings.render_workers,
            cpu_s=settings.render_cpu_s,
            memory_mib=settings.render_memory_mib,
            timeout_ms=settings.render_timeout_ms,
        )

    @property
    def pids(self) -> list[int]:
        """The live workers' process ids."""
        return sorted(w.pid for w in self._all if w.alive)

    async def start(self) -> None:
        """Start the missing workers now, rather than at the first render."""
        missing = self.workers - len(self._all)
        if missing > 0 and not self._closed:
            await asyncio.gather(*(self._fill() for _ in range(missing)))

    async def render(
        self, templates: Mapping[str, str], context: Mapping[str, Any]
    ) -> dict[str, str]:
        """Render every template in a worker; :class:`RenderError` on any failure or breach."""
        if not templates:
            return {}
        if self._closed:
            raise RuntimeError("the render pool is closed")
        request = _frame({"templates": dict(templates), "context": context})
        await self._slots.acquire()
        release = True
        try:
            worker = self._take_idle() or await self._spawn()
            try:
                return await self._render_on(worker, request)
            finally:
                if worker.healthy and not self._closed:
                    self._idle.append(worker)
                else:
                    self._discard(worker)
                    if not self._closed:
                        release = False  # the replacement releases the slot when it is up
                        self._background(self._replace())
        finally:
            if release:
                self._slots.release()

    async def _render_on(self, worker: _Worker, request: bytes) -> dict[str, str]:
        try:
            async with asyncio.timeout(self.timeout_ms / 1000):
                reply = await worker.exchange(request)
        except TimeoutError:
            worker.kill()
            raise RenderError(
                "RenderTimeout",
                f"rendering took longer than {self.timeout_ms} ms (wall clock); "
                "the render was stopped",
                worker.key,
            ) from None
        except (_Broken, ValueError) as exc:  # it answered nonsense: end it
            worker.kill()
            raise await self._death(worker, exc) from None
        except (asyncio.IncompleteReadError, ConnectionError) as exc:  # it is ending
            raise await self._death(worker, exc) from None
        except BaseException:  # cancelled mid-render: the worker's state is unknown
            worker.kill()
            raise
        if "ok" in reply and isinstance(reply["ok"], dict):
            return {str(k): str(v) for k, v in reply["ok"].items()}
        error = reply.get("error")
        if not isinstance(error, dict):
            worker.kill()
            raise RenderError("RenderWorkerFailed", "the render worker sent a malformed reply")
        reason = str(error.get("reason") or "TemplateError")
        key = error.get("key") if isinstance(error.get("key"), str) else None
        if reason == render_worker.MEMORY_LIMIT:
            worker.kill()
            raise RenderError(reason, self._memory_message(), worker.key)
        message = str(error.get("message") or reason)
        if key and message.startswith(f"{key}: "):
            message = message[len(key) + 2 :]
        raise RenderError(reason, message, key)

    async def _death(self, worker: _Worker, cause: BaseException) -> RenderError:
        """The error for a worker that stopped answering mid-render (it is ended if need be)."""
        worker.healthy = False
        try:
            status: int | None = await asyncio.wait_for(worker.proc.wait(), 5)
        except TimeoutError:
            worker.kill()
            status = None
        _log.warning("render worker %d ended (status %s, %r)", worker.pid, status, cause)
        if status == -signal.SIGXCPU:
            return RenderError(
                "RenderTimeout",
                f"rendering used more than {self.cpu_s} s of CPU; the render was stopped",
                worker.key,
            )
        if status == render_worker.EXIT_MEMORY:
            return RenderError("RenderMemoryLimit", self._memory_message(), worker.key)
        if status == -signal.SIGKILL:
            return RenderError(
                "RenderMemoryLimit",
                "the render worker was killed (SIGKILL, most likely out of memory)",
                worker.key,
            )
        return RenderError(
            "RenderWorkerFailed",
            f"the render worker ended unexpectedly (status {status})",
            worker.key,
        )

    def _memory_message(self) -> str:
        return f"rendering needed more than {self.memory_mib} MiB of memory; the render was stopped"

    def _take_idle(self) -> _Worker | None:
        while self._idle:
            worker = self._idle.pop()
            if worker.alive:
                return worker
            self._discard(worker)
        return None

    async def _spawn(self) -> _Worker:
        proc = await asyncio.create_subprocess_exec(
            *self._argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=None,
        )
        worker = _Worker(proc)
        self._all.add(worker)
        self.spawned += 1
        try:
            async with asyncio.timeout(SPAWN_TIMEOUT_S):
                hello = await worker.read()
            if "ready" not in hello:
                raise _Broken(f"unexpected greeting {hello!r}")
        except BaseException as exc:
            self._discard(worker)
            if isinstance(exc, Exception):
                raise RuntimeError(f"cannot start a render worker: {exc!r}") from exc
            raise
        if self._closed:
            self._discard(worker)
            raise RuntimeError("the render pool is closed")
        return worker

    async def _fill(self) -> None:
        await self._slots.acquire()
        try:
            self._idle.append(await self._spawn())
        finally:
            self._slots.release()

    async def _replace(self) -> None:
        """Start a worker in place of a killed one; holds the slot until then."""
        try:
            self._idle.append(await self._spawn())
        except Exception as exc:  # the next render tries again, and reports it
            _log.warning("could not replace a render worker: %s", exc)
        finally:
            self._slots.release()

    def _background(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _discard(self, worker: _Worker) -> None:
        worker.kill()
        with contextlib.suppress(ValueError):
            self._idle.remove(worker)
        self._dying = [w for w in self._dying if w.alive]
        self._dying.append(worker)
        self._all.discard(worker)

    def close(self) -> None:
        """Kill every worker; later renders raise. Idempotent."""
        self._closed = True
        for worker in list(self._all):
            self._discard(worker)
        for task in self._tasks:
            task.cancel()

    async def aclose(self) -> None:
        """:meth:`close`, then wait for the workers to exit. Idempotent."""
        self.close()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        dying, self._dying = self._dying, []
        for worker in dying:
            with contextlib.suppress(TimeoutError, ProcessLookupError):
                await asyncio.wait_for(worker.proc.wait(), 5)

    async def __aenter__(self) -> RenderPool:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def _frame(value: Any) -> bytes:
    body = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return render_worker.HEADER.pack(len(body)) + body
