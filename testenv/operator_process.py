"""An operator replica as a child process: ``kopf run -m kuberesolver.operator``.

Used by the tests, the demo and the benchmarks. It runs with the kubeconfig it
is given (the operator's own ServiceAccount, never admin). A subprocess can be
killed, which the HA and restart tests need.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from testenv.controlplane import free_port
from testenv.wait import WaitTimeout, until

ROOT = Path(__file__).resolve().parent.parent


class OperatorProcess:
    """One operator replica. ``stop()`` is graceful and idempotent; ``kill()`` is SIGKILL."""

    def __init__(
        self,
        kubeconfig: Path,
        env: dict[str, str] | None = None,
        name: str = "op",
        *,
        quiet: bool = False,
        args: tuple[str, ...] = (),
    ) -> None:
        self.kubeconfig = kubeconfig
        self.name = name
        self.quiet = quiet  # kopf --quiet (benchmarks) instead of --verbose (tests, demo)
        self.args = args
        """More ``kopf run`` arguments (e.g. ``--log-format=json``)."""
        self.liveness_port = free_port()
        self.metrics_port = free_port()
        self.extra_env = dict(env or {})
        self.identity = f"{name}-{os.getpid()}-{self.liveness_port}"
        """Its name in the leader Lease (``KUBERESOLVER_IDENTITY``)."""
        self.log_path = Path(tempfile.mkstemp(prefix=f"kuberesolver-{name}-", suffix=".log")[1])
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> OperatorProcess:
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "KUBERESOLVER_METRICS_PORT": str(self.metrics_port),
            "KUBERESOLVER_STATUS_INTERVAL_MS": "200",
            "KUBERESOLVER_IDENTITY": self.identity,
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
        }
        # Namespaced mode: kopf gets the namespaces of KUBERESOLVER_WATCH_NAMESPACES.
        watched = [n.strip() for n in env.get("KUBERESOLVER_WATCH_NAMESPACES", "").split(",")]
        scope = [f"--namespace={n}" for n in watched if n] or ["--all-namespaces"]
        argv = [
            sys.executable, "-m", "kopf", "run", "-m", "kuberesolver.operator",
            *scope, "--standalone",
            f"--liveness=http://127.0.0.1:{self.liveness_port}/healthz",
            "--quiet" if self.quiet else "--verbose", *self.args,
        ]  # fmt: skip
        log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True
        )
        log.close()
        self.wait_live()
        return self

    def __enter__(self) -> OperatorProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def wait_live(self, timeout_s: float = 60) -> None:
        def live() -> bool:
            if not self.alive:
                raise RuntimeError(f"operator {self.name} exited:\n{self.log_tail()}")
            with (
                contextlib.suppress(OSError, urllib.error.URLError),
                urllib.request.urlopen(self.liveness_url, timeout=2) as r,
            ):
                return bool(r.status == 200)
            return False

        try:
            until(live, timeout_s=timeout_s, interval_s=0.2, retry_on=())
        except WaitTimeout:
            raise TimeoutError(f"operator {self.name} not live:\n{self.log_tail()}") from None

    @property
    def liveness_url(self) -> str:
        return f"http://127.0.0.1:{self.liveness_port}/healthz"

    def metrics(self) -> str:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5
        ) as r:
            return str(r.read().decode())

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def stop(self, timeout_s: float = 30) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(10)
