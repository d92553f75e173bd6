"""The mounts webhook, called by the real apiserver at https://127.0.0.1:PORT with a test CA.

The operator serves it under its own RBAC; the configuration is the shipped
static one (manifests/webhook.yaml) with the Service reference swapped for a
URL. Pods are created through the apiserver; their admitted spec is checked
against a twin Pod that the webhook never sees.
"""

from __future__ import annotations

import base64
import contextlib
import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from testenv import ControlPlane, free_port
from testenv.kube import apply_object, documents
from testenv.operator_process import OperatorProcess
from testenv.wait import until
from tests.integration.operator.helpers import create_target

ROOT = Path(__file__).resolve().parents[3]
MOUNT_ROOT = "/var/run/kuberesolver"

pytestmark = pytest.mark.integration


@pytest.fixture
def webhook(
    control_plane: ControlPlane,
    admin_api: client.ApiClient,
    operator_factory: Callable[..., OperatorProcess],
    tmp_path: Path,
) -> Iterator[OperatorProcess]:
    """An operator serving the webhook on 127.0.0.1, registered with the apiserver."""
    cert_dir = tmp_path / "webhook-tls"
    cert_dir.mkdir()
    files = control_plane.ca.issue(
        "webhook", "kuberesolver-webhook", ip_addresses=("127.0.0.1",), server=True
    )
    (cert_dir / "tls.crt").write_bytes(files.cert.read_bytes())
    (cert_dir / "tls.key").write_bytes(files.key.read_bytes())
    port = free_port()
    op = operator_factory(
        env={
            "KUBERESOLVER_WEBHOOK_PORT": str(port),
            "KUBERESOLVER_WEBHOOK_ADDR": "127.0.0.1",
            "KUBERESOLVER_WEBHOOK_CERT_DIR": str(cert_dir),
        },
        name="webhook",
    )
    with registered(admin_api, control_plane, port):
        yield op


@contextlib.contextmanager
def registered(
    admin_api: client.ApiClient, control_plane: ControlPlane, port: int
) -> Iterator[None]:
    """The shipped MutatingWebhookConfiguration, calling https://127.0.0.1:PORT with the test CA."""
    config = next(
        d for d in documents(ROOT / "manifests/webhook.yaml")
        if d["kind"] == "MutatingWebhookConfiguration"
    )  # fmt: skip
    config = copy.deepcopy(config)
    config["metadata"]["annotations"] = {}
    ca_bundle = base64.b64encode(control_plane.ca.cert_path.read_bytes()).decode()
    for hook in config["webhooks"]:
        path = hook["clientConfig"]["service"]["path"]
        hook["clientConfig"] = {"url": f"https://127.0.0.1:{port}{path}", "caBundle": ca_bundle}
    apply_object(admin_api, config)
    try:
        yield
    finally:
        client.AdmissionregistrationV1Api(admin_api).delete_mutating_webhook_configuration(
            config["metadata"]["name"]
        )


def pod(name: str, labels: dict[str, str], annotations: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels, "annotations": annotations},
        "spec": {
            "automountServiceAccountToken": False,
            "containers": [
                {"name": "app", "image": "example.invalid/app:1"},
                {
                    "name": "side",
                    "image": "example.invalid/side:1",
                    "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
                },
            ],
            "volumes": [{"name": "scratch", "emptyDir": {}}],
        },
    }


INJECT = {"kuberesolver.io/inject": "true"}


def create(api: client.ApiClient, namespace: str, body: dict[str, Any]) -> tuple[Any, list[str]]:
    """Create through the apiserver; the admitted Pod (as a dict) and the API's warnings."""
    core = client.CoreV1Api(api)
    _, _, headers = core.create_namespaced_pod_with_http_info(namespace, body)
    warnings = [w for k, w in headers.items() if k.lower() == "warning"]
    admitted = api.sanitize_for_serialization(
        core.read_namespaced_pod(body["metadata"]["name"], namespace)
    )
    return admitted, warnings


def without_injection(spec: dict[str, Any]) -> dict[str, Any]:
    spec = copy.deepcopy(spec)
    spec["volumes"] = [v for v in spec["volumes"] if not v["name"].startswith("kuberesolver-")]
    for c in spec["containers"]:
        kept = [m for m in c.pop("volumeMounts", []) if not m["mountPath"].startswith(MOUNT_ROOT)]
        if kept:
            c["volumeMounts"] = kept
    return spec


def twin_spec(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    """The same Pod without the label: the webhook never sees it."""
    admitted, _ = create(api, namespace, pod(name, {}, {"kuberesolver.io/targets": "greeter"}))
    spec: dict[str, Any] = admitted["spec"]
    return spec


def test_annotated_pod_gets_one_read_only_mount_per_target_and_nothing_else(
    webhook: OperatorProcess, admin_api: client.ApiClient, namespace: str
) -> None:
    create_target(admin_api, namespace, "greeter", {"service": "greeter"})
    create_target(
        admin_api, namespace, "inventory", {"service": "stock", "configMapName": "inv-endpoints"}
    )
    body = pod("client", INJECT, {"kuberesolver.io/targets": "greeter, inventory"})

    def admitted_with_mounts() -> Any:
        admitted, _ = recreate(admin_api, namespace, body)
        return admitted if len(admitted["spec"]["volumes"]) > 1 else None

    # failurePolicy Ignore: until the webhook answers, Pods are admitted unchanged.
    admitted = until(admitted_with_mounts, timeout_s=60, message="a mutated Pod")
    spec = admitted["spec"]
    assert [v for v in spec["volumes"] if v["name"].startswith("kuberesolver-")] == [
        {"name": "kuberesolver-greeter", "configMap": {"name": "greeter", "defaultMode": 420}},
        {
            "name": "kuberesolver-inventory",
            "configMap": {"name": "inv-endpoints", "defaultMode": 420},
        },
    ]
    for c in spec["containers"]:
        ours = [m for m in c["volumeMounts"] if m["mountPath"].startswith(MOUNT_ROOT)]
        assert ours == [
            {"name": "kuberesolver-greeter", "mountPath": f"{MOUNT_ROOT}/greeter.{namespace}",
             "readOnly": True},
            {"name": "kuberesolver-inventory", "mountPath": f"{MOUNT_ROOT}/stock.{namespace}",
             "readOnly": True},
        ]  # fmt: skip
        assert all("subPath" not in m for m in c["volumeMounts"])
    assert without_injection(spec) == without_injection(twin_spec(admin_api, namespace, "twin"))


def test_unknown_target_leaves_the_pod_unchanged_with_a_warning(
    webhook: OperatorProcess, admin_api: client.ApiClient, namespace: str
) -> None:
    create_target(admin_api, namespace, "greeter", {"service": "greeter"})
    # wait until the webhook answers (a known target gets mounted)
    probe = pod("probe", INJECT, {"kuberesolver.io/targets": "greeter"})

    def served() -> bool:
        admitted, _ = recreate(admin_api, namespace, probe)
        return len(admitted["spec"]["volumes"]) > 1

    until(served, timeout_s=60, message="the webhook to answer")
    body = pod("client", INJECT, {"kuberesolver.io/targets": "greeter,nope"})
    admitted, warnings = create(admin_api, namespace, body)
    assert admitted["spec"] == twin_spec(admin_api, namespace, "twin")
    assert any("no GrpcTarget 'nope'" in w for w in warnings), warnings


def recreate(api: client.ApiClient, namespace: str, body: dict[str, Any]) -> tuple[Any, list[str]]:
    """Delete the Pod if a previous try made it (no kubelet: it goes at once), create it again."""
    core = client.CoreV1Api(api)
    name = body["metadata"]["name"]
    try:
        core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
    except client.ApiException as exc:
        if exc.status != 404:
            raise
    until(lambda: not _exists(core, namespace, name), timeout_s=30, message=f"{name} deleted")
    return create(api, namespace, body)


def _exists(core: client.CoreV1Api, namespace: str, name: str) -> bool:
    try:
        core.read_namespaced_pod(name, namespace)
    except client.ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True
