"""Direct mode runs on the real control plane, in the suite's private network (tests/cluster.py).

Fixtures: ``token_file`` (the client's ServiceAccount bound to the shipped
Role, its token on disk), ``builder`` (``kubernetes:`` resolved through the API
as that ServiceAccount) and ``pods`` (Service "greeter" and its pods).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

import kuberesolver
from kuberesolver.direct import unregister
from testenv import ControlPlane
from testenv.kube import apply_object, documents
from testenv.workloads import create_service
from tests import cluster
from tests.integration.direct.world import RBAC, Pods, bound_token


def pytest_configure(config: pytest.Config) -> None:
    cluster.configure(config)


@pytest.fixture
def token_file(admin_api: client.ApiClient, namespace: str, tmp_path: Path) -> Path:
    """The client's ServiceAccount, bound to the shipped Role, and its token on disk."""
    for doc in documents(RBAC):
        doc["metadata"]["namespace"] = namespace
        for s in doc.get("subjects", []):
            s["namespace"] = namespace
        apply_object(admin_api, doc)
    path = tmp_path / "token"
    path.write_text(bound_token(admin_api, namespace))
    return path


@pytest.fixture
def builder(control_plane: ControlPlane, token_file: Path) -> Iterator[kuberesolver.Builder]:
    """``kubernetes:`` targets resolved through the API as the client's ServiceAccount."""
    k8s = kuberesolver.new_in_cluster_k8s_client(
        host=control_plane.server, token_file=token_file, ca_file=control_plane.ca.cert_path
    )
    yield kuberesolver.register(kuberesolver.Builder(k8s))
    unregister("kubernetes")
    k8s.close()


@pytest.fixture
def pods(admin_api: client.ApiClient, namespace: str) -> Iterator[Pods]:
    create_service(admin_api, namespace, "greeter")
    p = Pods(admin_api, namespace)
    yield p
    p.stop()
