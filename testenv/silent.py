"""A TCP server that accepts every connection, reads what it is sent, and never answers.

It stands in for an API host (or a backend) that is up at the TCP level and
silent above it: a hung apiserver, a SYN-accepting load balancer with nothing
behind it. It counts connections and HTTP request lines, so a test can tell
one request from a request tried again behind its back.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType


class SilentServer:
    """Listens on ``host`` (an ephemeral port); ``url`` is ``http://host:port``."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._listener = socket.create_server((host, 0))
        self.host = host
        self.port = int(self._listener.getsockname()[1])
        self.connections = 0
        self.requests = 0
        """HTTP request lines received (``GET /... HTTP/1.1``)."""
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="silent-server", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._open.append(conn)
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        seen = b""
        while True:
            try:
                chunk = conn.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            seen = (seen + chunk)[-65536:]
            lines = seen.count(b" HTTP/1.1\r\n")
            if lines:
                with self._lock:
                    self.requests += lines
                seen = seen.rsplit(b" HTTP/1.1\r\n", 1)[1]

    def stop(self) -> None:
        """Close the listener and every connection. Idempotent."""
        self._stopped.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            conns, self._open = self._open, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.close()

    def __enter__(self) -> SilentServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
