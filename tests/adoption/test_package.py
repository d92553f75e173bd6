"""The distribution a platform team reviews: sdist and wheel built, checked by twine, complete.

The install of the bare wheel into a clean virtualenv (which needs the package
index) runs in CI outside the tests' private network: .ci/package-check; each
extra's, from the cached wheels, in tests/package/test_extras.py.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

from tests.adoption.conftest import ROOT


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--wheel", "--no-isolation",
         "--outdir", str(out), str(ROOT)],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    return out


def test_twine_check_passes(dist: Path) -> None:
    files = sorted(str(p) for p in dist.iterdir())
    assert len(files) == 2, files
    done = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *files],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_sdist_carries_what_a_user_installs_from(dist: Path) -> None:
    (sdist,) = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {m.name.split("/", 1)[1] for m in tar.getmembers() if "/" in m.name}
        chart_crd = tar.getmember(
            f"{sdist.name[:-7]}/charts/kuberesolver/files/crds/grpctarget.yaml"
        )
        assert chart_crd.isfile()  # the chart's link to crds/ becomes the file itself
    for path in (
        "LICENSE", "Dockerfile", ".dockerignore", "constraints.txt", "README.md",
        "crds/grpctarget.yaml",
        "manifests/kustomization.yaml", "manifests/deployment.yaml",
        "manifests/examples/greeter.yaml", "manifests/optional/servicemonitor.yaml",
        "manifests/optional/prometheusrule.yaml",
        "charts/kuberesolver/Chart.yaml", "charts/kuberesolver/values.yaml",
        "charts/kuberesolver/templates/deployment.yaml",
        "tests/conftest.py", "tests/adoption/test_readme_install.py",
        "testenv/build.sh", "testenv/gomod/kubectl/go.mod", "bench/import_time.py",
    ):  # fmt: skip
        assert path in names, path
    assert not any("__pycache__" in n for n in names)


def test_the_wheel_metadata(dist: Path) -> None:
    (wheel,) = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        meta = Parser().parsestr(zf.read(metadata).decode())
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "kuberesolver/py.typed" in names
    assert not any(n.startswith(("tests/", "testenv/", "charts/")) for n in names)
    assert meta["License-Expression"] == "Apache-2.0"
    classifiers = meta.get_all("Classifier") or []
    for prefix in ("Development Status ::", "Programming Language :: Python :: 3.11",
                   "Topic ::", "Typing :: Typed"):  # fmt: skip
        assert any(c.startswith(prefix) for c in classifiers), prefix
    assert set(meta.get_all("Provides-Extra") or []) >= {"operator", "metrics", "projector"}
    requires = meta.get_all("Requires-Dist") or []
    # The base depends on nothing heavy: grpc and the rest come with the client extra.
    assert [r for r in requires if "extra ==" not in r] == []
    assert any(r.startswith("grpcio") and 'extra == "client"' in r for r in requires)
    projector = [r for r in requires if 'extra == "projector"' in r]
    assert projector, projector
    # The projector runs on httpx and PyYAML: never the kubernetes client, kopf or Jinja2.
    names = {re.split(r"[<>=!~; ]", r, maxsplit=1)[0].lower() for r in projector}
    assert names == {"httpx", "pyyaml"}, projector


def test_the_license_is_apache_2() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text
    assert "Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text


def test_the_projector_without_its_extra_says_which_one() -> None:
    """A plain install lacks httpx: one line naming the extra, no traceback."""
    code = (
        "import sys\n"
        "sys.modules['httpx'] = None  # as if not installed\n"
        "from kuberesolver.projector.__main__ import main\n"
        "sys.exit(main(['--configmap=greeter', '--dir=/tmp/unused']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=ROOT
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "kuberesolver-projector needs httpx and PyYAML: pip install 'kuberesolver[projector]'"
    ]
