"""Fork: a channel made before ``fork()`` refuses its calls in the child, saying what to do.

The xDS server and the file watch behind a channel are threads, which a forked
child does not have; grpc's own rules apply to grpc (``GRPC_ENABLE_FORK_SUPPORT``).
Checked under ``multiprocessing`` with the fork start method, and in the flow
of gunicorn ``--preload``: the application module is imported in the master,
which then forks its workers.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.client._support import Backends, make_snapshot, publish

_MULTIPROCESSING = """
    import multiprocessing, sys
    import kuberesolver
    from tests.client._support import UNARY

    TARGET, ROOT = "kubernetes:///greeter.ns:grpc", sys.argv[1]


    def child(ch, out):
        said = []
        for attempt in (
            lambda: ch.unary_unary(UNARY)(b"", timeout=5),  # a stub made before the fork
            lambda: ch.unary_unary(UNARY),  # a stub made after it
            lambda: kuberesolver.insecure_channel(TARGET, snapshot_dir=ROOT),  # a new one
        ):
            try:
                attempt()
                said.append("no error")
            except kuberesolver.ForkedChannelError as exc:
                said.append(str(exc))
        ch.close()  # the parent's to close: nothing happens here
        out.send(said)


    with kuberesolver.insecure_channel(TARGET, snapshot_dir=ROOT) as ch:
        unary = ch.unary_unary(UNARY)
        assert unary(b"", timeout=5).startswith(b"a|")
        context = multiprocessing.get_context("fork")
        receive, send = context.Pipe(duplex=False)
        process = context.Process(target=child, args=(ch, send))
        process.start()
        assert receive.poll(60), "the child said nothing: it hung"
        for line in receive.recv():
            print(line.replace("\\n", " "))
        process.join(30)
        print("child exit code:", process.exitcode)
        print("parent:", unary(b"", timeout=5).decode().split("|")[0])
"""


def _run(script: str, root: Path, *args: str) -> list[str]:
    # grpc's own fork handlers off (GRPC_ENABLE_FORK_SUPPORT=0): with them on, its default,
    # a child forked while channels are live was measured to crash in them now and then
    # (SIGSEGV), whatever the child does
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), str(root), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=Path(__file__).parents[2],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": ".", "GRPC_ENABLE_FORK_SUPPORT": "0"},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout.splitlines()


def test_multiprocessing_fork_refuses_the_parents_channel_and_says_why(
    backends: Backends, root: Path, snapdir: Path
) -> None:
    a = backends("127.0.0.2", "a")
    publish(snapdir, make_snapshot([a.endpoint()]))
    stale, stub, fresh, code, parent = _run(_MULTIPROCESSING, root)
    for said in (stale, stub):
        assert "was made in process" in said
        assert "before it forked" in said
        assert "Make channels only after the fork" in said
    # a grpc server ran in the parent at the fork: grpc hangs or crashes in the child
    assert "xDS server ran there" in fresh
    assert "post_fork" in fresh
    assert code == "child exit code: 0"
    assert parent == "parent: a"  # the parent's channel is untouched


_PRELOAD = """
    import os, sys
    import kuberesolver
    from tests.client._support import UNARY

    TARGET, ROOT = "kubernetes:///greeter.ns:grpc", sys.argv[1]
    # the application module, imported by the master (gunicorn --preload)
    channel = None
    if sys.argv[2] == "at-import":
        channel = kuberesolver.insecure_channel(TARGET, snapshot_dir=ROOT)
        assert channel.unary_unary(UNARY)(b"", timeout=5)
    pids = []
    for worker in range(2):
        pid = os.fork()
        if pid:
            pids.append(pid)
            continue
        said = []
        if channel is not None:
            try:
                channel.unary_unary(UNARY)(b"", timeout=5)
                said.append("inherited: answered")
            except kuberesolver.ForkedChannelError:
                said.append("inherited: refused")
        # the post_fork hook (or first use in the worker): a channel of the worker's own
        try:
            with kuberesolver.insecure_channel(TARGET, snapshot_dir=ROOT) as mine:
                said.append(mine.unary_unary(UNARY)(b"", timeout=10).decode().split("|")[0])
        except kuberesolver.ForkedChannelError:
            said.append("own: refused")
        print(f"worker {worker}:", ", ".join(said), flush=True)
        os._exit(0)
    codes = [os.waitpid(pid, 0)[1] for pid in pids]
    if channel is not None:
        print("master:", channel.unary_unary(UNARY)(b"", timeout=5).decode().split("|")[0])
    print("exit codes:", codes, flush=True)
"""


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        # only the module imported in the master: workers make their channels, no flags needed
        ("never", ["worker 0: a", "worker 1: a", "exit codes: [0, 0]"]),
        # a channel made at import: refused in the workers, and so are channels of their
        # own (grpc would hang or crash); the master's works
        (
            "at-import",
            [
                "worker 0: inherited: refused, own: refused",
                "worker 1: inherited: refused, own: refused",
                "master: a",
                "exit codes: [0, 0]",
            ],
        ),
    ],
)
def test_the_gunicorn_preload_flow(
    backends: Backends, root: Path, snapdir: Path, when: str, expected: list[str]
) -> None:
    a = backends("127.0.0.2", "a")
    publish(snapdir, make_snapshot([a.endpoint()]))
    assert sorted(_run(_PRELOAD, root, when)) == sorted(expected)
