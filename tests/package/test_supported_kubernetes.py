"""The supported Kubernetes range the README and the chart state is the tested one.

testenv/versions.env pins the two versions the suite runs on (``make test`` on the
newest, ``make test-oldest`` on the oldest); a bump there must move the claims too.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from testenv.build import versions

ROOT = Path(__file__).resolve().parents[2]


def _minor(version: str) -> int:
    return int(version.removeprefix("v").split(".")[1])


def test_the_chart_requires_the_oldest_and_names_the_tested_versions() -> None:
    v = versions()
    oldest, newest = v["KUBERNETES_OLDEST_VERSION"], v["KUBERNETES_VERSION"]
    chart = yaml.safe_load((ROOT / "charts/kuberesolver/Chart.yaml").read_text())
    assert chart["kubeVersion"] == f">=1.{_minor(oldest)}.0-0"
    assert chart["annotations"]["kuberesolver.io/tested-kubernetes"] == f"{oldest} {newest}"


def test_the_readme_states_the_tested_range() -> None:
    v = versions()
    oldest, newest = v["KUBERNETES_OLDEST_VERSION"], v["KUBERNETES_VERSION"]
    text = " ".join((ROOT / "README.md").read_text().split())
    claim = (
        f"Kubernetes 1.{_minor(oldest)} to 1.{_minor(newest)}: the tested range, "
        f"{oldest} and {newest}"
    )
    assert claim in text
