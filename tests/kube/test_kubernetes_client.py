"""Direct mode's client factories and token file, on real files (no API server needed)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

import kuberesolver
from kuberesolver.kube.kubernetes_client import KubernetesClient, _TokenFile


class Config:
    def __init__(self) -> None:
        self.api_key: dict[str, Any] = {}


def test_the_token_file_is_read_again_when_it_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("first\n")
    token, config = _TokenFile(str(path)), Config()
    token.refresh(config)
    token.refresh(config)  # unchanged: not read again
    assert (config.api_key["authorization"], token.reads) == ("Bearer first", 1)
    fresh = tmp_path / "token.new"
    fresh.write_text("second\n")
    os.replace(fresh, path)  # as kubelet rotates it: a new file renamed over the old
    token.refresh(config)
    assert (config.api_key["authorization"], token.reads) == ("Bearer second", 2)


def test_a_vanished_token_file_keeps_the_last_token(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("only")
    token, config = _TokenFile(str(path)), Config()
    token.refresh(config)
    path.unlink()
    token.refresh(config)
    assert config.api_key["authorization"] == "Bearer only"


def test_in_cluster_without_the_variables_says_what_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(RuntimeError, match="KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT"):
        kuberesolver.new_in_cluster_k8s_client()


def test_in_cluster_without_the_token_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"token file .*/nope is missing"):
        kuberesolver.new_in_cluster_k8s_client(
            host="https://127.0.0.1:1", token_file=tmp_path / "nope", ca_file=tmp_path / "ca"
        )


def test_the_factories_give_a_k8s_client() -> None:
    k8s = kuberesolver.new_insecure_k8s_client("http://127.0.0.1:8001/")
    try:
        assert isinstance(k8s, KubernetesClient)
        assert isinstance(k8s, kuberesolver.K8sClient)
        assert k8s.host == "http://127.0.0.1:8001"
    finally:
        k8s.close()
