"""Each extra installs what its part imports: the built wheel, in a fresh venv, ``--no-index``.

The wheels come from the images' wheelhouse cache (:mod:`testenv.images.wheelhouse`:
the project's wheel, built from this checkout, and the pinned wheels of every
extra), so once that cache is warm no package index is reached. pip runs from
its wheel there: a venv holds only what the install brings.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from kuberesolver.core.atomic_writer import write_atomic
from kuberesolver.core.extras import CLIENT_INSTALL
from testenv.images import wheelhouse
from testenv.images._cache import ROOT

PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
CLIENT_DISTRIBUTIONS = {"grpcio", "xds-protos", "protobuf", "watchfiles"}
"""What the client brings and the projector must not: grpc, the Envoy protos, protobuf."""


@pytest.fixture(scope="module")
def wheels() -> tuple[Path, Path]:
    """The cached directories of the project's wheel and of its dependencies' wheels."""
    return wheelhouse.cached_wheels(wheelhouse.all_extras(), PYTHON)


def install(wheels: tuple[Path, Path], venv: Path, extra: str) -> Path:
    """A fresh venv with ``kuberesolver[extra]`` from ``wheels`` alone; its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    project, deps = wheels
    (pip,) = deps.glob("pip-*.whl")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    done = subprocess.run(
        [str(venv / "bin/python"), f"{pip}/pip", "install", "--quiet", "--no-index",
         "--no-cache-dir", "--disable-pip-version-check", "--find-links", str(project),
         "--find-links", str(deps), f"kuberesolver[{extra}]"],
        env=env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return venv / "bin/python"


def run(python: Path, code: str) -> subprocess.CompletedProcess[str]:
    """``code`` in the venv's interpreter, isolated from this checkout (``-I``)."""
    return subprocess.run(
        [str(python), "-I", "-c", code],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def distributions(python: Path) -> set[str]:
    code = (
        "import importlib.metadata as m\n"
        "for d in m.distributions(): print(d.metadata['Name'].lower().replace('_', '-'))\n"
    )
    done = run(python, code)
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


@pytest.fixture(scope="module")
def projector(wheels: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install(wheels, tmp_path_factory.mktemp("projector") / "venv", "projector")


def test_the_projector_installs_no_grpc_envoy_or_protobuf(projector: Path) -> None:
    names = distributions(projector)
    assert {"kuberesolver", "httpx", "pyyaml"} <= names
    assert {n for n in names if n.startswith("grpcio")} == set()
    assert names & (CLIENT_DISTRIBUTIONS | {"kubernetes", "kopf", "jinja2"}) == set()
    modules = ("grpc", "envoy", "xds", "udpa", "validate", "google", "watchfiles", "kubernetes")
    done = run(
        projector, f"import importlib.util as u; print([m for m in {modules!r} if u.find_spec(m)])"
    )
    assert done.stdout.strip() == "[]", done.stderr


def test_the_projector_answers_help_and_check_there(projector: Path, tmp_path: Path) -> None:
    script = [str(projector.parent / "kuberesolver-projector")]
    done = subprocess.run([*script, "--help"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "--configmap" in done.stdout
    target = tmp_path / "greeter.demo"
    check = [*script, "--check", "--configmap=greeter", f"--dir={target}"]
    done = subprocess.run(check, capture_output=True, text=True, check=False)
    assert done.returncode == 1, done.stderr  # nothing projected yet
    write_atomic(target, {"endpoints.json": b"{}"})
    done = subprocess.run(check, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    "code",
    [
        "import kuberesolver; kuberesolver.insecure_channel",
        "from kuberesolver import Channel",
        "import kuberesolver.aio",
        "from kuberesolver.server import DrainableServer",
        "import kuberesolver; kuberesolver.load_report(cpu_utilization=0.5, rps=1.0)",
    ],
)
def test_without_the_client_extra_the_client_names_it(projector: Path, code: str) -> None:
    done = run(projector, code)
    assert done.returncode == 1, done.stdout
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("ModuleNotFoundError: the kuberesolver client needs grpcio"), last
    assert last.endswith(CLIENT_INSTALL), last


def test_without_the_direct_extra_direct_mode_names_it(projector: Path) -> None:
    done = run(
        projector,
        "import kuberesolver.direct as d; d.new_insecure_k8s_client('http://127.0.0.1:1')",
    )
    assert done.returncode == 1, done.stdout
    assert "pip install 'kuberesolver[direct]'" in done.stderr.strip().splitlines()[-1]


def test_the_kuberesolver_command_needs_no_extra(projector: Path, tmp_path: Path) -> None:
    command = str(projector.parent / "kuberesolver")
    for argv in (
        [command, "snapshot", str(tmp_path), "greeter.demo", "10.0.0.1:50051"],
        [command, "inspect", str(tmp_path / "greeter.demo")],
        [command, "bootstrap", "--server", "xds.example:18000"],
    ):
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
    assert (
        "serve"
        in subprocess.run(
            [command, "inspect", str(tmp_path)], capture_output=True, text=True, check=True
        ).stdout
    )


def _every_module_of(package: str) -> str:
    return (
        f"import importlib, pkgutil, {package} as p\n"
        "for m in pkgutil.walk_packages(p.__path__, p.__name__ + '.'):\n"
        "    importlib.import_module(m.name)\n"
    )


WHAT_EACH_EXTRA_RUNS = {
    # The library: every client module, the facades, a channel's name, a load report.
    "client": _every_module_of("kuberesolver.client")
    + "import kuberesolver, kuberesolver.aio, kuberesolver.server, kuberesolver.direct\n"
    "kuberesolver.insecure_channel\n"
    "kuberesolver.load_report(cpu_utilization=0.5, rps=1.0)\n",
    # DrainableServer reads channelz to see its connections close.
    "server": "import kuberesolver.server\n"
    "from kuberesolver.client import channelz\n"
    "list(channelz.top_channels())\n",
    "metrics": "from kuberesolver.client import channelz, metrics\n"
    "assert metrics.ENABLED\n"
    "list(channelz.top_channels())\n"
    "import kuberesolver; kuberesolver.insecure_channel\n",
    # Direct mode: the client, and the kubernetes client its factories load.
    "direct": "import kuberesolver.direct, kuberesolver.kube.kubernetes_client\n"
    "import kuberesolver; kuberesolver.insecure_channel\n",
    # The operator: every module, kopf, and the xDS server its feed loads when enabled.
    "operator": _every_module_of("kuberesolver.operator")
    + "import kopf, kuberesolver.xds.ads_aio, kuberesolver.xds.metrics, kuberesolver.xds.store\n",
}


@pytest.mark.parametrize("extra", sorted(WHAT_EACH_EXTRA_RUNS))
def test_each_extra_brings_what_its_part_imports(wheels: Path, tmp_path: Path, extra: str) -> None:
    python = install(wheels, tmp_path / "venv", extra)
    done = run(python, WHAT_EACH_EXTRA_RUNS[extra])
    assert done.returncode == 0, done.stderr


def test_every_extra_is_checked() -> None:
    assert {*WHAT_EACH_EXTRA_RUNS, "projector"} == set(wheelhouse.all_extras())


def test_the_operator_pins_the_client_s_requirements_alike() -> None:
    """The operator repeats three of the client's requirements (it needs no watchfiles)."""
    optional = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    client = {re.split(r"[<>=!~ ]", r, maxsplit=1)[0]: r for r in optional["client"]}
    repeated = [
        r for r in optional["operator"] if re.split(r"[<>=!~ ]", r, maxsplit=1)[0] in client
    ]
    assert len(repeated) == 3, repeated
    for requirement in repeated:
        assert requirement in client.values(), requirement
