"""xDS bootstrap injection, through the real apiserver calling the operator's webhook.

The operator serves the webhook (as tests/integration/operator/test_webhook.py) and xDS
with TLS on 127.0.0.1, under its own RBAC. A Pod annotated
``kuberesolver.io/xds: "true"`` is created through the apiserver; its admitted
spec must hold the inline bootstrap, the projected token and CA, and nothing
else beyond a twin Pod the webhook never sees.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from testenv import ControlPlane, free_port
from testenv.operator_process import OperatorProcess
from testenv.wait import until
from tests.integration.operator.helpers import create_target
from tests.integration.operator.test_webhook import INJECT, create, pod, recreate

ROOT = Path(__file__).resolve().parents[3]
TOKEN_DIR = "/var/run/secrets/kuberesolver"
XDS = {"kuberesolver.io/xds": "true"}
ADDED_ENV = ("GRPC_XDS_BOOTSTRAP_CONFIG", "GRPC_EXPERIMENTAL_XDS_BOOTSTRAP_CALL_CREDS")

pytestmark = pytest.mark.integration


@pytest.fixture
def xds_webhook(
    webhooks: Callable[..., OperatorProcess], control_plane: ControlPlane, tmp_path: Path
) -> OperatorProcess:
    """An operator serving the webhook and TLS xDS on 127.0.0.1 (certificates from the test CA)."""
    xds_dir = tmp_path / "xds-tls"
    xds_dir.mkdir()
    files = control_plane.ca.issue("xds", "kuberesolver-xds", ip_addresses=("127.0.0.1",),
                                   server=True)  # fmt: skip
    (xds_dir / "tls.crt").write_bytes(files.cert.read_bytes())
    (xds_dir / "tls.key").write_bytes(files.key.read_bytes())
    (xds_dir / "ca.crt").write_bytes(control_plane.ca.cert_path.read_bytes())
    return webhooks({
        **LEASE_NAMESPACE,
        "KUBERESOLVER_XDS_ADDRESS": f"127.0.0.1:{free_port()}",
        "KUBERESOLVER_XDS_CERT_FILE": str(xds_dir / "tls.crt"),
        "KUBERESOLVER_XDS_KEY_FILE": str(xds_dir / "tls.key"),
    }, name="xdswebhook")  # fmt: skip


LEASE_NAMESPACE = {"KUBERESOLVER_LEASE_NAMESPACE": "kuberesolver-system"}


def without_xds(admitted: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = copy.deepcopy(admitted["spec"])
    spec["volumes"] = [v for v in spec["volumes"] if v["name"] != "kuberesolver-xds"]
    for c in spec["containers"]:
        env = [e for e in c.pop("env", []) if e["name"] not in ADDED_ENV]
        if env:
            c["env"] = env
        mounts = [m for m in c.pop("volumeMounts", []) if m["mountPath"] != TOKEN_DIR]
        if mounts:
            c["volumeMounts"] = mounts
    return spec


def annotated(name: str, labels: dict[str, str]) -> dict[str, Any]:
    body = pod(name, labels, XDS)
    own = {"name": "GRPC_XDS_BOOTSTRAP", "value": "/etc/own-bootstrap.json"}
    body["spec"]["containers"].append(
        {"name": "own", "image": "example.invalid/own:1", "env": [own]}
    )
    return body


def test_annotated_pod_gets_the_bootstrap_token_and_ca_and_nothing_else(
    xds_webhook: OperatorProcess,
    control_plane: ControlPlane,
    admin_api: client.ApiClient,
    namespace: str,
) -> None:
    body = annotated("client", INJECT)

    def admitted_with_xds() -> tuple[Any, list[str]] | None:
        admitted, warnings = recreate(admin_api, namespace, body)
        volumes = admitted["spec"]["volumes"]
        return (
            (admitted, warnings) if any(v["name"] == "kuberesolver-xds" for v in volumes) else None
        )

    # failurePolicy Ignore: until the webhook answers, Pods are admitted unchanged.
    found = until(admitted_with_xds, timeout_s=60, message="an injected Pod")
    assert found is not None
    admitted, warnings = found
    spec = admitted["spec"]
    volume = next(v for v in spec["volumes"] if v["name"] == "kuberesolver-xds")
    assert volume["projected"]["sources"] == [
        {"serviceAccountToken": {"audience": "xds.kuberesolver.io", "expirationSeconds": 600,
                                 "path": "token"}},
        {"downwardAPI": {"items": [{"path": "ca.crt", "fieldRef": {
            "apiVersion": "v1", "fieldPath": "metadata.annotations['kuberesolver.io/xds-ca']"}}]}},
    ]  # fmt: skip
    ca = control_plane.ca.cert_path.read_text()
    assert admitted["metadata"]["annotations"]["kuberesolver.io/xds-ca"] == ca
    app, side, own = spec["containers"]
    for c in (app, side):
        env = {e["name"]: e["value"] for e in c["env"]}
        assert env["GRPC_EXPERIMENTAL_XDS_BOOTSTRAP_CALL_CREDS"] == "true"
        bootstrap = json.loads(env["GRPC_XDS_BOOTSTRAP_CONFIG"])
        server = bootstrap["authorities"]["xds.kuberesolver.io"]["xds_servers"][0]
        assert server["server_uri"] == "kuberesolver-xds.kuberesolver-system.svc:18000"
        assert server["channel_creds"] == [
            {"type": "tls", "config": {"ca_certificate_file": f"{TOKEN_DIR}/ca.crt"}}
        ]
        assert server["call_creds"] == [
            {"type": "jwt_token_file", "config": {"jwt_token_file": f"{TOKEN_DIR}/token"}}
        ]
        assert bootstrap["xds_servers"] == [server]
        ours = [m for m in c["volumeMounts"] if m["name"] == "kuberesolver-xds"]
        assert ours == [{"name": "kuberesolver-xds", "mountPath": TOKEN_DIR, "readOnly": True}]
    assert own["env"] == [{"name": "GRPC_XDS_BOOTSTRAP", "value": "/etc/own-bootstrap.json"}]
    assert all(m["name"] != "kuberesolver-xds" for m in own.get("volumeMounts", []))
    assert any("'own' sets GRPC_XDS_BOOTSTRAP" in w for w in warnings), warnings
    twin, _ = create(admin_api, namespace, annotated("twin", {}))
    assert without_xds(admitted) == twin["spec"]


@pytest.fixture
def webhook_without_xds(webhooks: Callable[..., OperatorProcess]) -> OperatorProcess:
    """The webhook of an operator that serves no xDS."""
    return webhooks(LEASE_NAMESPACE)


def test_an_operator_without_xds_warns_and_still_mounts_the_targets(
    webhook_without_xds: OperatorProcess, admin_api: client.ApiClient, namespace: str
) -> None:
    create_target(admin_api, namespace, "greeter", {"service": "greeter"})
    body = pod("client", INJECT, {"kuberesolver.io/targets": "greeter", **XDS})

    def mounted() -> tuple[Any, list[str]] | None:
        admitted, warnings = recreate(admin_api, namespace, body)
        return (admitted, warnings) if len(admitted["spec"]["volumes"]) > 1 else None

    found = until(mounted, timeout_s=60, message="the webhook to answer")
    assert found is not None
    admitted, warnings = found
    assert [v["name"] for v in admitted["spec"]["volumes"]] == ["scratch", "kuberesolver-greeter"]
    for c in admitted["spec"]["containers"]:
        assert "env" not in c
    assert "kuberesolver.io/xds-ca" not in admitted["metadata"]["annotations"]
    assert any("does not serve xDS" in w for w in warnings), warnings
