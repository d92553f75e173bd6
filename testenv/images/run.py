"""Run a built image's commands with buildah (runc, as root): for the tests and the bench.

``buildah run`` applies the image's user, environment and working directory,
as a container runtime would. ``network="host"`` shares the caller's network
namespace (the tests' private one). ``buildah run`` answers SIGTERM by killing
the container, so a graceful stop signals the container's process itself
(``process_in``), as kubelet's runtime would.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def container(ref: str) -> Iterator[str]:
    """A working container of the image (removed after)."""
    cid = _out(["buildah", "from", "--pull=never", "--quiet", ref])
    try:
        yield cid
    finally:
        subprocess.run(["buildah", "rm", cid], check=False, capture_output=True)


@contextlib.contextmanager
def mounted(cid: str) -> Iterator[Path]:
    """The container's root filesystem on the host (read it; writes stay in the container)."""
    root = Path(_out(["buildah", "mount", cid]))
    try:
        yield root
    finally:
        subprocess.run(["buildah", "umount", cid], check=False, capture_output=True)


def config(ref: str) -> dict[str, Any]:
    """The image's OCI config (``User``, ``Env``, ``Entrypoint``, ``Cmd``, ``WorkingDir``...)."""
    found = json.loads(_out(["buildah", "inspect", "--type", "image", ref]))
    conf: dict[str, Any] = found["OCIv1"]["config"]
    return conf


def entrypoint(ref: str) -> list[str]:
    """What a runtime starts: the image's entrypoint and its default arguments."""
    conf = config(ref)
    return [*(conf.get("Entrypoint") or []), *(conf.get("Cmd") or [])]


def command(
    cid: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    volumes: Sequence[str] = (),
    network: str = "none",
    pid_host: bool = False,
) -> list[str]:
    """The ``buildah run`` command line."""
    return [
        "buildah", "run", f"--network={network}",
        *(["--pid=host"] if pid_host else []),
        *(f"--env={k}={v}" for k, v in (env or {}).items()),
        *(f"--volume={v}" for v in volumes),
        cid, "--", *argv,
    ]  # fmt: skip


def run(
    cid: str, argv: Sequence[str], *, timeout_s: float = 120, **options: Any
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` in the container to its end; its output, whatever its exit status."""
    return subprocess.run(
        command(cid, argv, **options),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def start(cid: str, argv: Sequence[str], log: IO[bytes], **options: Any) -> subprocess.Popen[bytes]:
    """Start ``argv`` in the container in the background; output to ``log``."""
    return subprocess.Popen(
        command(cid, argv, **options), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def process_in(runner: subprocess.Popen[bytes], marker: str, timeout_s: float = 30) -> int:
    """The PID (as seen here: ours to read in /proc and to signal) of the container process
    started by ``runner`` (``start``) whose command line holds ``marker``."""
    deadline = time.monotonic() + timeout_s
    while True:
        for pid in _descendants(runner.pid):
            argv = _cmdline(pid)
            if argv and "buildah" not in argv[0] and any(marker in a for a in argv):
                return pid
        if runner.poll() is not None or time.monotonic() > deadline:
            raise LookupError(f"no process with {marker!r} in the container of {runner.args!r}")
        time.sleep(0.1)


def _descendants(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            # pid (comm) state ppid ...: comm may hold spaces and parentheses
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = [], [root]
    while frontier:
        kids = [pid for pid, ppid in parents.items() if ppid in frontier]
        found += kids
        frontier = kids
    return found


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return raw.decode(errors="replace").split("\0")[:-1]


def _out(argv: list[str]) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()
