"""The bootstrap the webhook injects, inline in ``GRPC_XDS_BOOTSTRAP_CONFIG`` with no file,
is read by grpcio and by grpc-go: each reaches a real backend through the ADS server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable

import pytest

from kuberesolver.operator.webhook.xds_inject import XdsInjection, plan_xds
from kuberesolver.xds.bootstrap import ENV_CONFIG
from kuberesolver.xds.store import XdsStore
from testenv.grpc_go import xds_client
from tests.client._support import Backend, make_snapshot
from tests.xds.conftest import AUTHORITY, CLIENT, Client, ServerThread

TARGET = f"xds://{AUTHORITY}/greeter.ns"


class InjectedClient(Client):
    """``command`` with only the environment the webhook injects (no bootstrap file)."""

    def __init__(self, command: tuple[str, ...], injected: dict[str, str]) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GRPC_XDS_BOOTSTRAP")}
        env.update(injected)
        self.proc = subprocess.Popen(
            [*command, TARGET], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        assert json.loads(self._line()) == {"ready": True}


@pytest.mark.timeout(900)  # a cold build of the Go client takes minutes
@pytest.mark.parametrize("language", ["grpcio", "grpc-go"])
def test_the_inline_bootstrap_reaches_the_backend(
    store: XdsStore, xds: ServerThread, backends: Callable[..., Backend], language: str
) -> None:
    b1 = backends("127.0.0.2", "b1")
    store.put(("ns", "greeter"), make_snapshot([b1.endpoint()]))
    plan, _ = plan_xds(
        {"spec": {"containers": [{"name": "app"}]}},
        "ns",
        XdsInjection(server_uri=xds.uri, authority=AUTHORITY),
    )
    assert plan is not None
    injected = dict(plan.env)
    assert set(injected) == {ENV_CONFIG}
    command: tuple[str, ...] = (
        (sys.executable, str(CLIENT)) if language == "grpcio" else (str(xds_client()),)
    )
    client = InjectedClient(command, injected)
    try:
        assert client.calls(10) == {"counts": {"b1": 10}, "errors": []}
    finally:
        client.close()
