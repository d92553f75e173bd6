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
from collections.abc import Iterator


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
        for chunk in _received(conn):
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

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _received(conn: socket.socket) -> Iterator[bytes]:
    """What ``conn`` sends, chunk by chunk, until it closes or fails."""
    while True:
        try:
            chunk = conn.recv(65536)
        except OSError:
            return
        if not chunk:
            return
        yield chunk


_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_SETTINGS = 0x4
_ACK = 0x1


def _frame(kind: int, flags: int, payload: bytes = b"", stream: int = 0) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big")


class StalledHttp2Server(SilentServer):
    """An HTTP/2 server that completes the handshake and then goes silent.

    To each connection it sends its SETTINGS and acknowledges the client's
    (so grpc counts the connection READY and sends calls on it), then never
    writes another byte: no headers, no data, no PING acknowledgement. It is a
    backend hung below the application: a stuck process, a frozen VM, a
    half-open NAT entry. ``calls`` counts the HEADERS frames (new calls) it got.
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.calls = 0
        self.pings = 0
        super().__init__(host)

    def _read(self, conn: socket.socket) -> None:
        buffer = b""
        greeted = False
        for chunk in _received(conn):
            buffer += chunk
            if not greeted:
                if len(buffer) < len(_PREFACE):
                    continue
                if not buffer.startswith(_PREFACE):
                    return
                buffer = buffer[len(_PREFACE) :]
                try:
                    conn.sendall(_frame(_SETTINGS, 0) + _frame(_SETTINGS, _ACK))
                except OSError:
                    return
                greeted = True
            while len(buffer) >= 9:
                size = int.from_bytes(buffer[:3], "big")
                if len(buffer) < 9 + size:
                    break
                kind = buffer[3]
                with self._lock:
                    if kind == 0x1:  # HEADERS: a new call
                        self.calls += 1
                    elif kind == 0x6:  # PING
                        self.pings += 1
                buffer = buffer[9 + size :]
