"""The user's tools, kubectl and helm, built beside the control plane (build-tools.sh).

:class:`UserShell` runs command lines as a user types them, against one
control plane: ``kubectl`` and ``helm`` on ``PATH``, ``KUBECONFIG`` set, the
repository as the working directory, and a private ``HOME`` for helm's caches.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from testenv.build import ensure_binaries

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ("kubectl", "helm")


def tools_dir() -> Path:
    """The bin directory holding kubectl and helm (built by build.sh when missing)."""
    bin_dir = ensure_binaries()
    missing = [t for t in TOOLS if not (bin_dir / t).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{bin_dir} lacks {', '.join(missing)}: run testenv/build-tools.sh {bin_dir}"
        )
    return bin_dir


@dataclass(frozen=True)
class Result:
    """One command line's outcome."""

    command: str
    returncode: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return f"$ {self.command}\n{self.stdout}{self.stderr}(exit {self.returncode})"


class UserShell:
    """Run command lines with bash, as a user at a terminal in the repository would."""

    def __init__(self, kubeconfig: Path, cwd: Path = ROOT) -> None:
        self.cwd = cwd
        home = Path(tempfile.mkdtemp(prefix="kuberesolver-user-"))
        self.env = {
            "PATH": f"{tools_dir()}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
            "KUBECONFIG": str(kubeconfig),
            "HOME": str(home),
            "HELM_CACHE_HOME": str(home / ".cache/helm"),
            "HELM_CONFIG_HOME": str(home / ".config/helm"),
            "HELM_DATA_HOME": str(home / ".local/share/helm"),
            "LANG": "C.UTF-8",
        }
        self.history: list[Result] = []

    def run(self, command: str, check: bool = True, timeout_s: float = 180) -> Result:
        """Run one line; with ``check``, raise AssertionError showing it when it fails."""
        done = subprocess.run(
            ["bash", "-o", "pipefail", "-c", command],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        result = Result(command, done.returncode, done.stdout, done.stderr)
        self.history.append(result)
        if check and done.returncode != 0:
            raise AssertionError(f"command failed:\n{result}")
        return result
