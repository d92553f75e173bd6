"""The ``operator`` fixtures (see testenv.operator_process); helpers are in helpers.py.

The operator runs with its own identity only (``operator_kubeconfig``: the
ServiceAccount bound to the RBAC in manifests/), never as admin.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import MappingProxyType

import pytest
from kubernetes import client

from testenv.controlplane import ControlPlane
from testenv.mounts_webhook import registered, webhook_env
from testenv.operator_process import OperatorProcess
from tests import cluster
from tests.integration.operator.helpers import Namespace


def pytest_configure(config: pytest.Config) -> None:
    cluster.configure(config)


@pytest.fixture
def operator_factory(operator_kubeconfig: Path) -> Iterator[Callable[..., OperatorProcess]]:
    """Start replicas on demand; every one is stopped after the test."""
    started: list[OperatorProcess] = []

    def start(env: dict[str, str] | None = None, name: str = "op") -> OperatorProcess:
        op = OperatorProcess(operator_kubeconfig, env, name=f"{name}{len(started)}")
        started.append(op)
        return op.start()

    yield start
    for op in reversed(started):
        op.stop()
    for op in started:
        if os.environ.get("KUBERESOLVER_KEEP_LOGS") is None:
            op.log_path.unlink(missing_ok=True)


@pytest.fixture
def operator(operator_factory: Callable[..., OperatorProcess]) -> OperatorProcess:
    """One operator replica under the project's RBAC, for this test."""
    return operator_factory()


@pytest.fixture
def webhooks(
    control_plane: ControlPlane,
    admin_api: client.ApiClient,
    operator_factory: Callable[..., OperatorProcess],
    tmp_path: Path,
) -> Iterator[Callable[..., OperatorProcess]]:
    """Start an operator serving the mounts webhook on 127.0.0.1 (``env`` added to its
    settings), registered with the apiserver until the test ends."""
    with contextlib.ExitStack() as registrations:

        def start(
            env: Mapping[str, str] = MappingProxyType({}), name: str = "webhook"
        ) -> OperatorProcess:
            served = webhook_env(control_plane, tmp_path / f"{name}-tls")
            op = operator_factory(env={**served, **env}, name=name)
            port = int(served["KUBERESOLVER_WEBHOOK_PORT"])
            registrations.enter_context(registered(admin_api, control_plane, port))
            return op

        yield start


@pytest.fixture
def webhook(webhooks: Callable[..., OperatorProcess]) -> OperatorProcess:
    """An operator serving the webhook on 127.0.0.1, registered with the apiserver."""
    return webhooks()


@pytest.fixture
def ns(admin_api: client.ApiClient, namespace: str) -> Namespace:
    """This test's namespace, with the helpers of helpers.py bound to it and the admin client."""
    return Namespace(admin_api, namespace)
