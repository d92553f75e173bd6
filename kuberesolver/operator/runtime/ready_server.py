"""``GET /readyz`` over plain HTTP, answered from memory (no API call).

200 ``ok`` when :func:`~kuberesolver.operator.logic.readiness.unmet` finds
nothing, else 503 with one line per unmet condition. aiohttp is kopf's own
dependency; the server runs on the operator's event loop.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from kuberesolver.operator.logic.readiness import Readiness, unmet

__all__ = ["ReadyServer"]


class ReadyServer:
    """Serves the probe on ``port`` (all addresses). :meth:`close` is idempotent."""

    def __init__(self, read: Callable[[], Readiness], port: int, host: str = "0.0.0.0") -> None:
        self._read = read
        self.port = port
        self.host = host
        self._runner: web.AppRunner | None = None

    async def _readyz(self, _request: web.Request) -> web.Response:
        missing = unmet(self._read())
        if missing:
            return web.Response(status=503, text="\n".join(missing) + "\n")
        return web.Response(text="ok\n")

    async def start(self) -> None:
        """Listen (``OSError`` if the port is taken)."""
        app = web.Application()
        app.router.add_get("/readyz", self._readyz)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner

    async def close(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
