"""Fixtures for the xDS server tests: the server on its own loop, real backends, real clients.

The server runs in a thread with its own asyncio loop, as a host would run it;
tests call the store from their own thread (the operator's seam is
thread-safe). Clients are plain grpcio processes reading a bootstrap written
by ``python -m kuberesolver bootstrap``.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import grpc
import pytest

from kuberesolver.xds.ads_aio import AdsServer, StreamInfo
from kuberesolver.xds.store import XdsStore
from tests.client._support import Backend
from tests.factories import stopped_after

AUTHORITY = "xds.test.kuberesolver.io"
CLIENT = Path(__file__).with_name("_client.py")


class ServerThread:
    """An :class:`AdsServer` on a loop of its own, on 127.0.0.1."""

    def __init__(
        self,
        store: XdsStore,
        credentials: grpc.ServerCredentials | None = None,
        method_timeouts: str = "auto",
    ) -> None:
        self.store = store
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="xds-loop", daemon=True)
        self.thread.start()
        self.server = AdsServer(store, method_timeouts=method_timeouts)
        self.port = self.run(self.server.start("127.0.0.1:0", credentials))

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    @property
    def uri(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stream_for(self, listener: str) -> StreamInfo | None:
        """The open stream subscribed to the Listener ``listener``."""
        found = [s for s in self.server.streams() if listener in s.subscribed.get("Listener", ())]
        assert len(found) <= 1, found
        return found[0] if found else None

    def stop(self) -> None:
        self.run(self.server.stop(0))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def acked_all(info: StreamInfo) -> bool:
    """Whether the stream has every type and has acked every response it was sent."""
    return len(info.responses) == 3 and all(
        info.acked.get(t) == str(n) for t, n in info.responses.items()
    )


def only(client: Client, names: set[str], index: int = 0, n: int = 20) -> bool:
    """Whether ``n`` calls on target ``index`` all succeed and reach exactly ``names``."""
    result = client.calls(n, index)
    return not result["errors"] and set(result["counts"]) == names


class Client:
    """A client process with one channel per target: grpcio's ``grpc.insecure_channel``
    (``_client.py``), or ``command`` (grpc-go's, same protocol)."""

    def __init__(self, bootstrap: Path, targets: list[str], command: tuple[str, ...] = ()) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GRPC_XDS_BOOTSTRAP")}
        env["GRPC_XDS_BOOTSTRAP"] = str(bootstrap)
        self.proc = subprocess.Popen(
            [*(command or (sys.executable, str(CLIENT))), *targets],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert json.loads(self._line()) == {"ready": True}

    def _line(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, f"the client process ended (status {self.proc.poll()})"
        return line

    def calls(self, n: int, index: int = 0) -> dict[str, Any]:
        """Make ``n`` calls on target ``index``: ``{"counts": {backend: n}, "errors": [...]}``."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{index} {n}\n")
        self.proc.stdin.flush()
        result: dict[str, Any] = json.loads(self._line())
        return result

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def store() -> XdsStore:
    return XdsStore(AUTHORITY)


@pytest.fixture
def xds(store: XdsStore) -> Iterator[ServerThread]:
    server = ServerThread(store)
    yield server
    server.stop()


def write_bootstrap(out: Path, server_uri: str, *extra: str) -> Path:
    """Write a bootstrap with ``python -m kuberesolver bootstrap``, as a user would."""
    subprocess.run(
        [sys.executable, "-m", "kuberesolver", "bootstrap", "--server", server_uri,
         "--authority", AUTHORITY, "--node-id", "test-client", "--out", str(out), *extra],
        check=True, timeout=60,
    )  # fmt: skip
    return out


@pytest.fixture
def bootstrap(xds: ServerThread, tmp_path: Path) -> Path:
    return write_bootstrap(tmp_path / "bootstrap.json", xds.uri)


@pytest.fixture
def clients(bootstrap: Path) -> Iterator[Callable[..., Client]]:
    """A factory of grpcio client processes, one channel per target given."""
    yield from stopped_after(lambda *targets: Client(bootstrap, list(targets)), Client.close)


@pytest.fixture
def backends() -> Iterator[Callable[..., Backend]]:
    yield from stopped_after(Backend, Backend.stop)


class Rig(NamedTuple):
    """The served store, its server, and makers of clients and backends (all stopped after)."""

    store: XdsStore
    xds: ServerThread
    clients: Callable[..., Client]
    backends: Callable[..., Backend]


@pytest.fixture
def rig(
    store: XdsStore,
    xds: ServerThread,
    clients: Callable[..., Client],
    backends: Callable[..., Backend],
) -> Rig:
    return Rig(store, xds, clients, backends)
