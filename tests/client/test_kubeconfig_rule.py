"""Which kubeconfig direct mode reads out of cluster: kubectl's rule, on real files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import kuberesolver
from kuberesolver.kube.client import kubeconfig_path


def test_the_argument_then_kubeconfig_then_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    assert kubeconfig_path() == str(tmp_path / ".kube" / "config")
    listed = os.pathsep.join(["/a/one", "/b/two"])
    monkeypatch.setenv("KUBECONFIG", listed)
    assert kubeconfig_path() == listed  # a list, merged as kubectl merges it
    assert kubeconfig_path("~/mine.yaml") == str(tmp_path / "mine.yaml")


def test_out_of_cluster_a_missing_kubeconfig_says_where_it_was_looked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(FileNotFoundError, match=r"the default, ~/\.kube/config"):
        kuberesolver.new_k8s_client()
    with pytest.raises(FileNotFoundError, match="from the kubeconfig argument"):
        kuberesolver.new_k8s_client(tmp_path / "named")
    with pytest.raises(ValueError, match="not both"):
        kuberesolver.Builder(
            kuberesolver.new_insecure_k8s_client("http://127.0.0.1:1"), kubeconfig="x"
        )
