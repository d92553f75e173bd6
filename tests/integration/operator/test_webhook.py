"""The mounts webhook, called by the real apiserver at https://127.0.0.1:PORT with a test CA.

The operator serves it under its own RBAC; the configuration is the shipped
static one (manifests/webhook.yaml) with the Service reference swapped for a
URL. Pods are created through the apiserver; their admitted spec is checked
against a twin Pod that the webhook never sees.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from testenv.operator_process import OperatorProcess
from testenv.wait import until
from testenv.workloads import create_service
from tests.integration.operator.helpers import create_target

ROOT = Path(__file__).resolve().parents[3]
MOUNT_ROOT = "/var/run/kuberesolver"

pytestmark = pytest.mark.integration


PROJECTOR_IMAGE = "registry.example/kuberesolver-projector:0.1.0"


@pytest.fixture
def webhook_with_projector(webhooks: Callable[..., OperatorProcess]) -> OperatorProcess:
    """The same, given the projector image (as the shipped Deployment does)."""
    return webhooks({
        "KUBERESOLVER_PROJECTOR_IMAGE": PROJECTOR_IMAGE,
        "KUBERESOLVER_PROJECTOR_IMAGE_PULL_POLICY": "Never",
    })  # fmt: skip


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


def targets_mounted(spec: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """Each container's mounts under the mount root, in order."""
    return [
        [m for m in c["volumeMounts"] if m["mountPath"].startswith(MOUNT_ROOT)]
        for c in spec["containers"]
    ]


def mounts(greeter_path: str, namespace: str) -> list[dict[str, Any]]:
    """The read-only mounts of greeter (at ``greeter_path``) and of inventory, in order."""
    stock = f"{MOUNT_ROOT}/stock.{namespace}"
    return [
        {"name": "kuberesolver-greeter", "mountPath": greeter_path, "readOnly": True},
        {"name": "kuberesolver-inventory", "mountPath": stock, "readOnly": True},
    ]


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
    greeter = mounts(f"{MOUNT_ROOT}/greeter.{namespace}", namespace)
    assert targets_mounted(spec) == [greeter] * len(spec["containers"])
    assert all("subPath" not in m for c in spec["containers"] for m in c["volumeMounts"])
    assert without_injection(spec) == without_injection(twin_spec(admin_api, namespace, "twin"))


def test_unknown_target_leaves_the_pod_unchanged_with_a_warning(
    webhook: OperatorProcess, admin_api: client.ApiClient, namespace: str
) -> None:
    create_target(admin_api, namespace, "greeter", {"service": "greeter"})
    # wait until the webhook answers (a known target gets mounted)
    until_served(admin_api, namespace)
    body = pod("client", INJECT, {"kuberesolver.io/targets": "greeter,nope"})
    admitted, warnings = create(admin_api, namespace, body)
    assert admitted["spec"] == twin_spec(admin_api, namespace, "twin")
    assert any("no GrpcTarget 'nope'" in w for w in warnings), warnings


def until_served(api: client.ApiClient, namespace: str) -> None:
    """Wait until the webhook answers: a Pod asking for the GrpcTarget greeter gets it mounted."""
    probe = pod("probe", INJECT, {"kuberesolver.io/targets": "greeter"})
    until(
        lambda: len(recreate(api, namespace, probe)[0]["spec"]["volumes"]) > 1,
        timeout_s=60,
        message="the webhook to answer",
    )


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


HOSTILE = {
    "otherns/secret": "is not a GrpcTarget name",
    "../../otherns/grpctargets/secret": "is not a GrpcTarget name",
    "otherns%2Fsecret": "is not a GrpcTarget name",
    "..%2F..%2Fotherns%2Fgrpctargets%2Fsecret": "is not a GrpcTarget name",
    "greeter/status": "is not a GrpcTarget name",
    "greeter%2Fstatus": "is not a GrpcTarget name",
    ",".join(f"n{i}" for i in range(36_000)): "(36000 entries), more than 32 GrpcTarget names",
    ",".join(f"n{i}" for i in range(33)): "lists 33 names, more than the 32 GrpcTargets allowed",
}


def test_hostile_annotations_admit_the_pod_unchanged_with_one_warning(
    webhook: OperatorProcess, admin_api: client.ApiClient, namespace: str
) -> None:
    """Never a 5xx or a 422, never another namespace's data: the Pod as it was, and a warning."""
    create_target(admin_api, namespace, "greeter", {"service": "greeter"})
    other = f"{namespace}-other"
    client.CoreV1Api(admin_api).create_namespace({"metadata": {"name": other}})
    try:
        create_target(admin_api, other, "secret", {"service": "secret"})
        until_served(admin_api, namespace)
        twin = twin_spec(admin_api, namespace, "twin")
        for i, (annotation, problem) in enumerate(HOSTILE.items()):
            body = pod(f"hostile-{i}", INJECT, {"kuberesolver.io/targets": annotation})
            admitted, warnings = create(admin_api, namespace, body)  # raises on a 4xx or 5xx
            assert admitted["spec"] == twin, annotation[:60]
            ours = [w for w in warnings if "kuberesolver.io/targets" in w]
            assert len(ours) == 1, (annotation[:60], warnings)
            assert problem in ours[0]
            assert "the Pod is left unchanged" in ours[0]
            assert len(ours[0]) < 400
        # the same names, beside a good one: still all or nothing
        body = pod("mixed", INJECT, {"kuberesolver.io/targets": "greeter,otherns/secret"})
        admitted, warnings = create(admin_api, namespace, body)
        assert admitted["spec"] == twin
        assert any("'otherns/secret' is not a GrpcTarget name" in w for w in warnings), warnings
    finally:
        client.CoreV1Api(admin_api).delete_namespace(other)
    assert "Traceback" not in webhook.log_text()


def test_a_target_created_just_before_its_pod_is_found(
    webhook: OperatorProcess, admin_api: client.ApiClient, namespace: str
) -> None:
    """The watch may not have seen it yet: one LIST of the namespace finds it."""
    create_target(admin_api, namespace, "greeter", {"service": "greeter"})
    until_served(admin_api, namespace)
    for i in range(5):
        create_target(admin_api, namespace, f"fresh-{i}", {"service": f"fresh{i}"})
        admitted, warnings = create(
            admin_api,
            namespace,
            pod(f"client-{i}", INJECT, {"kuberesolver.io/targets": f"fresh-{i}"}),
        )
        assert [v["name"] for v in admitted["spec"]["volumes"]][-1] == f"kuberesolver-fresh-{i}"
        assert warnings == []


def _sidecars(admitted: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in admitted["spec"].get("initContainers") or [] if c.get("restartPolicy")]


def test_a_headless_services_target_gets_the_projector_and_a_clusterip_ones_the_mount(
    webhook_with_projector: OperatorProcess, admin_api: client.ApiClient, namespace: str
) -> None:
    """No ClusterIP to fall back on while kubelet's copy lags: the projector in a native
    sidecar writes the path the client reads; a ClusterIP Service keeps the plain mount."""
    create_service(admin_api, namespace, "greeter", headless=True)
    create_service(admin_api, namespace, "stock", headless=False)
    create_target(admin_api, namespace, "greeter", {"service": "greeter"})
    create_target(admin_api, namespace, "inventory", {"service": "stock"})
    body = pod("client", INJECT, {"kuberesolver.io/targets": "greeter,inventory"})

    def with_sidecar() -> Any:
        admitted, warnings = recreate(admin_api, namespace, body)
        return (admitted, warnings) if _sidecars(admitted) else None

    # until the webhook answers and its watch of the Services has the new one
    admitted, warnings = until(with_sidecar, timeout_s=60, message="a Pod with the sidecar")
    assert warnings == []
    spec = admitted["spec"]
    greeter_path = f"{MOUNT_ROOT}/greeter.{namespace}"
    (side,) = _sidecars(admitted)
    assert side["name"] == "kuberesolver-greeter"
    assert side["restartPolicy"] == "Always"
    assert side["image"] == PROJECTOR_IMAGE
    assert side["imagePullPolicy"] == "Never"
    assert side["command"] == [
        "kuberesolver-projector", f"--namespace={namespace}", "--configmap=greeter",
        f"--dir={greeter_path}",
    ]  # fmt: skip
    assert side["volumeMounts"] == [
        {"name": "kuberesolver-greeter", "mountPath": greeter_path},
        {"name": "kuberesolver-api-access", "readOnly": True,
         "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"},
    ]  # fmt: skip
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["kuberesolver-greeter"] == {"name": "kuberesolver-greeter", "emptyDir": {}}
    assert volumes["kuberesolver-inventory"]["configMap"]["name"] == "inventory"
    assert "kuberesolver-api-access" in volumes  # the Pod mounts no token of its own
    assert targets_mounted(spec) == [mounts(greeter_path, namespace)] * len(spec["containers"])

    # With its own token (the apiserver's kube-api-access-* volume, mounted before the
    # webhook runs), the sidecar mounts that one and the Pod gets no other.
    client.CoreV1Api(admin_api).create_namespaced_service_account(
        namespace, {"metadata": {"name": "greeter-client"}}
    )
    with_token = copy.deepcopy(body)
    with_token["metadata"]["name"] = "client-with-token"
    with_token["spec"]["serviceAccountName"] = "greeter-client"
    del with_token["spec"]["automountServiceAccountToken"]
    admitted, warnings = create(admin_api, namespace, with_token)
    assert warnings == []
    (side,) = _sidecars(admitted)
    (token,) = [m for m in admitted["spec"]["containers"][0]["volumeMounts"]
                if m["mountPath"] == "/var/run/secrets/kubernetes.io/serviceaccount"]  # fmt: skip
    assert token["name"].startswith("kube-api-access-")
    assert side["volumeMounts"][1] == {**token, "readOnly": True}
    assert "kuberesolver-api-access" not in [v["name"] for v in admitted["spec"]["volumes"]]

    # a Pod naming only the ClusterIP Service's target gets exactly the plain mount
    plain = pod("plain", INJECT, {"kuberesolver.io/targets": "inventory"})
    admitted, warnings = create(admin_api, namespace, plain)
    assert warnings == []
    assert "initContainers" not in admitted["spec"]
    assert [v["name"] for v in admitted["spec"]["volumes"]] == ["scratch", "kuberesolver-inventory"]


def test_without_a_projector_image_a_headless_target_is_mounted_with_a_warning(
    webhook: OperatorProcess, admin_api: client.ApiClient, namespace: str
) -> None:
    create_service(admin_api, namespace, "greeter", headless=True)
    create_target(admin_api, namespace, "greeter", {"service": "greeter"})
    body = pod("client", INJECT, {"kuberesolver.io/targets": "greeter"})

    def warned() -> Any:
        admitted, warnings = recreate(admin_api, namespace, body)
        return (admitted, warnings) if warnings else None

    admitted, warnings = until(warned, timeout_s=60, message="the headless Service noticed")
    assert "initContainers" not in admitted["spec"]
    assert {
        "name": "kuberesolver-greeter",
        "configMap": {"name": "greeter", "defaultMode": 420},
    } in (admitted["spec"]["volumes"])
    (warning,) = warnings
    assert f"Service greeter.{namespace} (GrpcTarget 'greeter') is headless" in warning
    assert "KUBERESOLVER_PROJECTOR_IMAGE" in warning
    assert "calls may fail during rollouts" in warning


def test_the_sidecar_passes_the_restricted_pod_security_level(
    webhook_with_projector: OperatorProcess, admin_api: client.ApiClient, namespace: str
) -> None:
    """PodSecurity admission judges the Pod after the webhook: a hardened Pod in a namespace
    enforcing "restricted" is admitted with the sidecar, not refused because of it."""
    core = client.CoreV1Api(admin_api)
    core.patch_namespace(
        namespace, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}
    )
    create_service(admin_api, namespace, "greeter", headless=True)
    create_target(admin_api, namespace, "greeter", {"service": "greeter"})
    body = pod("hardened", INJECT, {"kuberesolver.io/targets": "greeter"})
    body["spec"]["securityContext"] = {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    for c in body["spec"]["containers"]:
        c["securityContext"] = {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        }

    def with_sidecar() -> Any:
        admitted, _ = recreate(admin_api, namespace, body)  # raises if PodSecurity refuses it
        return admitted if _sidecars(admitted) else None

    admitted = until(with_sidecar, timeout_s=60, message="a restricted Pod with the sidecar")
    assert _sidecars(admitted)[0]["name"] == "kuberesolver-greeter"
