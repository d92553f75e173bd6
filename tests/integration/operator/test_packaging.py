"""Packaging: metrics, liveness, the manifests on the real apiserver, the Dockerfile."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from testenv.kube import apply, documents
from testenv.netns import pod_ip
from testenv.operator_process import OperatorProcess
from testenv.tools import tools_dir
from testenv.wait import until
from tests.integration.operator.helpers import (
    create_target,
    ep,
    get_configmap,
    make_slice,
    selectorless_service,
    wait_published,
)

ROOT = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.integration


def test_metrics_and_liveness(
    admin_api: client.ApiClient, namespace: str, operator: OperatorProcess
) -> None:
    selectorless_service(admin_api, namespace, "svc")
    make_slice(
        admin_api, namespace, "svc", "svc-1", [ep(pod_ip(171)), ep(pod_ip(172), ready=False)]
    )
    create_target(admin_api, namespace, "m", {"service": "svc"})
    create_target(admin_api, namespace, "bad", {"service": "svc", "templates": {"x": "{{ nope }}"}})
    wait_published(admin_api, namespace, "m", {pod_ip(171), pod_ip(172)})

    def scraped() -> dict[str, float]:
        values: dict[str, float] = {}
        for line in operator.metrics().splitlines():
            if line and not line.startswith("#"):
                key, value = line.rsplit(" ", 1)
                values[key] = float(value)
        assert (
            values.get(
                f'kuberesolver_operator_endpoints{{namespace="{namespace}",state="ready",target="m"}}'
            )
            == 1
        )
        assert values.get('kuberesolver_operator_errors_total{kind="render"}', 0) >= 1
        return values

    values = until(scraped, timeout_s=30, message="metrics")
    states = {
        state: values[
            f'kuberesolver_operator_endpoints{{namespace="{namespace}",state="{state}",target="m"}}'
        ]
        for state in ("ready", "not_ready", "terminating")
    }
    assert states == {"ready": 1, "not_ready": 1, "terminating": 0}  # they sum to all 2
    assert values["kuberesolver_operator_targets"] >= 2
    assert values['kuberesolver_operator_configmap_writes_total{operation="create"}'] >= 1
    assert values["kuberesolver_operator_reconcile_seconds_count"] >= 1
    assert 'kuberesolver_operator_errors_total{kind="api"}' in values

    with urllib.request.urlopen(operator.liveness_url, timeout=5) as r:
        assert r.status == 200
        health = json.loads(r.read())
    assert isinstance(health["targets"], int)  # kopf caches probe results for a while


def test_manifests_apply_to_the_real_apiserver(admin_api: client.ApiClient) -> None:
    core = client.CoreV1Api(admin_api)
    try:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="demo")))
    except client.ApiException as exc:
        if exc.status != 409:
            raise
    applied = apply(
        admin_api,
        ROOT / "crds",
        ROOT / "manifests" / "namespace.yaml",
        ROOT / "manifests" / "rbac.yaml",
        ROOT / "manifests" / "deployment.yaml",
        ROOT / "manifests" / "examples",
    )
    assert "Deployment/kuberesolver-operator" in applied
    assert "GrpcTarget/greeter" in applied
    dep = client.AppsV1Api(admin_api).read_namespaced_deployment(
        "kuberesolver-operator", "kuberesolver-system"
    )
    assert dep.spec.replicas == 2
    pod = dep.spec.template.spec
    assert pod.service_account_name == "kuberesolver-operator"
    assert pod.security_context.run_as_non_root is True
    (container,) = pod.containers
    assert container.security_context.read_only_root_filesystem is True
    assert container.security_context.allow_privilege_escalation is False
    assert container.args[:1] == ["run"]
    assert "kuberesolver.operator" in container.args
    assert "--standalone" in container.args  # the Lease elects the writer, not kopf peering


def test_rbac_has_no_wildcards_and_only_its_own_secret() -> None:
    """Secrets: only the webhook's TLS Secret, in the operator's namespace (a Role), by
    name for everything but create (which the authorizer cannot limit by name)."""
    for doc in documents(ROOT / "manifests" / "rbac.yaml"):
        for rule in doc.get("rules", []):
            assert "*" not in rule.get("verbs", []), rule
            assert "*" not in rule.get("resources", []), rule
            assert "delete" not in rule.get("verbs", []), rule
            assert "list" not in rule["verbs"] or "secrets" not in rule["resources"], rule
            if "secrets" in rule.get("resources", []):
                assert doc["kind"] == "Role", doc["metadata"]
                assert doc["metadata"]["namespace"] == "kuberesolver-system"
                assert rule["resources"] == ["secrets"]
                if rule.get("verbs") != ["create"]:
                    assert rule["resourceNames"] == ["kuberesolver-webhook-tls"], rule
                    assert set(rule["verbs"]) <= {"get", "update"}, rule
            if "mutatingwebhookconfigurations" in rule.get("resources", []):
                assert rule["resourceNames"] == ["kuberesolver-mounts"], rule
                assert set(rule["verbs"]) <= {"get", "patch"}, rule


def test_the_cert_manager_component_hands_tls_to_cert_manager(tmp_path: Path) -> None:
    """manifests/optional/cert-manager: files mode, the Secret mounted, caBundle injected,
    and no Secret or webhook-configuration rights left."""
    kubectl = tools_dir() / "kubectl"
    here = Path(os.path.relpath(ROOT / "manifests", tmp_path))
    (tmp_path / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources: [{here}]\ncomponents: [{here}/optional/cert-manager]\n"
    )
    out = subprocess.run(
        [str(kubectl), "kustomize", str(tmp_path)], capture_output=True, text=True, check=True
    ).stdout
    docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(out) if d}
    container = docs[("Deployment", "kuberesolver-operator")]["spec"]["template"]["spec"][
        "containers"
    ][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KUBERESOLVER_WEBHOOK_TLS"] == "files"
    assert {"name": "webhook-tls", "mountPath": env["KUBERESOLVER_WEBHOOK_CERT_DIR"],
            "readOnly": True} in container["volumeMounts"]  # fmt: skip
    config = docs[("MutatingWebhookConfiguration", "kuberesolver-mounts")]
    assert config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == (
        "kuberesolver-system/kuberesolver-webhook"
    )
    assert docs[("Certificate", "kuberesolver-webhook")]["spec"]["secretName"] == (
        "kuberesolver-webhook-tls"
    )
    for doc in docs.values():
        for rule in doc.get("rules", []):
            assert "secrets" not in rule["resources"], rule
            assert "mutatingwebhookconfigurations" not in rule["resources"], rule
    assert ("Role", "kuberesolver-operator-webhook-tls") not in docs


def test_dockerfile_is_slim_non_root_and_lint_clean() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    lines = [ln.strip() for ln in dockerfile.splitlines() if ln.strip() and not ln.startswith("#")]
    assert any(ln.startswith("ARG PYTHON_IMAGE=python:") and "slim" in ln for ln in lines)
    # The operator is the last stage, the default of `docker build .`.
    lines = lines[max(i for i, ln in enumerate(lines) if ln.startswith("FROM ")) :]
    assert lines[0].endswith(" AS operator")
    users = [ln for ln in lines if ln.startswith("USER ")]
    assert users
    assert users[-1].split()[1].split(":")[0] not in ("root", "0")
    entry = json.loads(next(ln for ln in lines if ln.startswith("ENTRYPOINT"))[len("ENTRYPOINT") :])
    cmd = json.loads(next(ln for ln in lines if ln.startswith("CMD"))[len("CMD") :])
    assert entry + cmd[:1] == ["kopf", "run"]
    assert cmd[-2:] == ["-m", "kuberesolver.operator"]
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    result = subprocess.run(
        [hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_deployment_args_match_the_image() -> None:
    (dep,) = [
        d for d in documents(ROOT / "manifests" / "deployment.yaml") if d["kind"] == "Deployment"
    ]
    container: dict[str, Any] = dep["spec"]["template"]["spec"]["containers"][0]
    liveness = next(a for a in container["args"] if a.startswith("--liveness="))
    assert liveness.endswith(":8080/healthz")
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KUBERESOLVER_METRICS_PORT"] == "9090"
    assert yaml.safe_dump(dep)  # round-trips


def test_a_bad_setting_stops_the_operator_with_a_clear_message(
    operator_factory: Callable[..., OperatorProcess],
) -> None:
    with pytest.raises(RuntimeError, match="exited") as exc:
        operator_factory(env={"KUBERESOLVER_WRITE_BUDGET": "soon"})
    assert "KUBERESOLVER_WRITE_BUDGET='soon': expected BURST/WINDOW" in str(exc.value)


def test_the_full_example_publishes(admin_api: client.ApiClient, operator: OperatorProcess) -> None:
    for name in ("demo", "backend"):
        try:
            client.CoreV1Api(admin_api).create_namespace(
                client.V1Namespace(metadata=client.V1ObjectMeta(name=name))
            )
        except client.ApiException as exc:
            if exc.status != 409:
                raise
    apply(admin_api, ROOT / "manifests" / "examples" / "cross-namespace.yaml")
    make_slice(
        admin_api, "backend", "inventory", "inventory-example",
        [ep(pod_ip(181)), ep(pod_ip(182), ready=False)],
    )  # fmt: skip

    def published() -> dict[str, str]:
        cm = get_configmap(admin_api, "demo", "inventory-endpoints")
        assert cm is not None
        assert "upstream.conf" in (cm.data or {})
        assert pod_ip(181) in cm.data["backends.txt"]
        return dict(cm.data)

    data = until(published, timeout_s=60, message="the example's ConfigMap")
    assert data["backends.txt"] == f"{pod_ip(181)}:50051\n"
    assert f"server {pod_ip(181)}:50051;" in data["upstream.conf"]
    assert pod_ip(182) not in data["upstream.conf"]
    config = json.loads(data["service-config.json"])
    assert config["loadBalancingConfig"] == [{"weighted_round_robin": {}}]
    assert config["methodConfig"][0]["retryPolicy"]["maxAttempts"] == 3
