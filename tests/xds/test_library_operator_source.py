"""Library mode ``source="operator"``: ``kuberesolver.insecure_channel("kubernetes:///...")`` in
a grpcio process, with no snapshot file, reaches real backends on 127.0.0.x through the
operator-side ADS server and follows its store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kuberesolver.operator.webhook.xds_inject import XdsInjection, plan_xds
from kuberesolver.xds.store import XdsStore
from testenv.wait import until
from tests.client._support import Backend, make_snapshot
from tests.factories import stopped_after
from tests.xds.conftest import AUTHORITY, Client, Rig, ServerThread, only

LIBRARY_CLIENT = Path(__file__).with_name("_library_client.py")
GREETER = ("ns", "greeter")


@pytest.fixture
def library_clients(
    bootstrap: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Client]]:
    """Client processes of ``_library_client.py`` with the operator as their source."""
    monkeypatch.setenv("KUBERESOLVER_SOURCE", "operator")
    monkeypatch.setenv("KUBERESOLVER_XDS_AUTHORITY", AUTHORITY)
    monkeypatch.setenv("KUBERESOLVER_DIR", str(tmp_path / "no-snapshots-here"))

    def make(*targets: str, aio: bool = False) -> Client:
        command = (sys.executable, str(LIBRARY_CLIENT), *(["--aio"] if aio else []))
        return Client(bootstrap, list(targets), command)

    yield from stopped_after(make, Client.close)


@pytest.mark.parametrize("aio", [False, True], ids=["sync", "aio"])
def test_kubernetes_target_through_the_operator_follows_the_store(
    rig: Rig, library_clients: Callable[..., Client], aio: bool
) -> None:
    store, xds, _, backends = rig
    b1, b2 = backends("127.0.0.2", "b1"), backends("127.0.0.3", "b2")
    store.put(GREETER, make_snapshot([b1.endpoint()]))
    client = library_clients("kubernetes:///greeter.ns:grpc", aio=aio)
    info = json.loads(client._line())
    assert info["types"] == [
        "kuberesolver.client.aio.Channel" if aio else "kuberesolver.client.channel.Channel"
    ]
    assert info["grpc"] == [True]
    assert "follows the operator's xDS" in info["snapshots"][0]
    assert client.calls(20) == {"counts": {"b1": 20}, "errors": []}
    stream = xds.stream_for(f"xdstp://{AUTHORITY}/envoy.config.listener.v3.Listener/greeter.ns")
    assert stream is not None

    store.put(GREETER, make_snapshot([b1.endpoint(), b2.endpoint()], revision=2))
    until(lambda: only(client, {"b1", "b2"}), timeout_s=10, message="b2 added")
    store.put(GREETER, make_snapshot([b1.endpoint(terminating=True), b2.endpoint()], revision=3))
    until(lambda: only(client, {"b2"}), timeout_s=10, message="b1 draining")


class InlineClient(Client):
    """A ``_library_client.py`` process with the environment the webhook injects."""

    def __init__(self, injected: dict[str, str], targets: list[str]) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GRPC_XDS_BOOTSTRAP")}
        env.update(injected, KUBERESOLVER_SOURCE="operator", KUBERESOLVER_XDS_AUTHORITY=AUTHORITY)
        self.proc = subprocess.Popen(
            [sys.executable, str(LIBRARY_CLIENT), *targets],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert json.loads(self._line()) == {"ready": True}


def test_the_bootstrap_the_webhook_injects_serves_a_kubernetes_target(
    store: XdsStore, xds: ServerThread, backends: Callable[..., Backend]
) -> None:
    """The webhook's plan for a plaintext operator, its GRPC_XDS_BOOTSTRAP_CONFIG inline."""
    b1 = backends("127.0.0.2", "b1")
    store.put(GREETER, make_snapshot([b1.endpoint()]))
    pod = {"spec": {"containers": [{"name": "app"}]}}
    plan, warnings = plan_xds(pod, "ns", XdsInjection(server_uri=xds.uri, authority=AUTHORITY))
    assert plan is not None
    assert warnings == []
    client = InlineClient(dict(plan.env), ["kubernetes:///greeter.ns:grpc"])
    try:
        json.loads(client._line())
        assert client.calls(10) == {"counts": {"b1": 10}, "errors": []}
    finally:
        client.close()


def test_with_no_bootstrap_the_server_setting_has_the_library_add_one(
    store: XdsStore, xds: ServerThread, backends: Callable[..., Backend]
) -> None:
    b1 = backends("127.0.0.2", "b1")
    store.put(GREETER, make_snapshot([b1.endpoint()]))
    client = InlineClient({"KUBERESOLVER_XDS_SERVER": xds.uri}, ["kubernetes:///greeter.ns:grpc"])
    try:
        json.loads(client._line())
        assert client.calls(10) == {"counts": {"b1": 10}, "errors": []}
    finally:
        client.close()


def test_without_a_bootstrap_naming_the_operator_the_channel_is_refused() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRPC_XDS_BOOTSTRAP")}
    env["KUBERESOLVER_SOURCE"] = "operator"
    code = (
        "import kuberesolver\n"
        "try:\n"
        "    kuberesolver.insecure_channel('kubernetes:///greeter.ns:grpc')\n"
        "except ValueError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert "source='operator' needs an xDS bootstrap" in out.stdout, out
