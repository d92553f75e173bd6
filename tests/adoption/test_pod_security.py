"""The example client pods and the operator pass the "restricted" Pod Security level.

The real apiserver's PodSecurity admission judges them: the examples are
applied with kubectl into a namespace labelled
``pod-security.kubernetes.io/enforce=restricted``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import yaml
from kubernetes import client

from testenv import ControlPlane
from testenv.kube import documents
from testenv.tools import UserShell
from tests.adoption.conftest import ROOT

pytestmark = pytest.mark.integration

EXAMPLES_WITH_PODS = ("greeter.yaml", "projector-sidecar.yaml")


@pytest.fixture
def restricted_namespace(admin_api: client.ApiClient, installed: list[str]) -> Iterator[str]:
    name = f"psa-{uuid.uuid4().hex[:8]}"
    labels = {"pod-security.kubernetes.io/enforce": "restricted"}
    core = client.CoreV1Api(admin_api)
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels))
    )
    yield name
    core.delete_namespace(name)


@pytest.fixture(scope="module")
def admin_shell(control_plane: ControlPlane) -> UserShell:
    return UserShell(control_plane.admin_kubeconfig)


def _into(namespace: str, *files: str) -> str:
    """The example documents, moved from namespace demo into ``namespace``."""
    docs = []
    for doc in documents(*(ROOT / "manifests" / "examples" / f for f in files)):
        if doc["kind"] == "Namespace":
            continue
        doc["metadata"]["namespace"] = namespace
        for subject in doc.get("subjects", []):
            subject["namespace"] = namespace
        docs.append(doc)
    return yaml.safe_dump_all(docs)


def test_the_example_namespace_enforces_restricted() -> None:
    (ns,) = [
        d for d in documents(ROOT / "manifests/examples/greeter.yaml") if d["kind"] == "Namespace"
    ]
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


@pytest.mark.parametrize("example", EXAMPLES_WITH_PODS)
def test_example_pods_are_admitted_as_restricted(
    admin_shell: UserShell, restricted_namespace: str, example: str
) -> None:
    manifest = _into(restricted_namespace, example)
    result = admin_shell.run(f"kubectl apply -f - <<'EOF'\n{manifest}EOF", check=False)
    assert result.returncode == 0, str(result)
    assert "violate" not in result.stderr, str(result)
    pods = [d["metadata"]["name"] for d in yaml.safe_load_all(manifest) if d["kind"] == "Pod"]
    for pod in pods:
        admin_shell.run(f"kubectl get pod -n {restricted_namespace} {pod}")


def test_a_pod_without_hardening_is_refused_there(
    admin_shell: UserShell, restricted_namespace: str
) -> None:
    """The control: the namespace really enforces the level."""
    result = admin_shell.run(
        f"kubectl run -n {restricted_namespace} plain --image=example.invalid/x:1", check=False
    )
    assert result.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in result.stderr, str(result)


def test_the_operator_pod_template_passes_restricted(
    admin_shell: UserShell, restricted_namespace: str
) -> None:
    (deployment,) = documents(ROOT / "manifests" / "deployment.yaml")
    deployment["metadata"]["namespace"] = restricted_namespace
    result = admin_shell.run(
        f"kubectl apply --dry-run=server -f - <<'EOF'\n{yaml.safe_dump(deployment)}EOF"
    )
    assert "would violate PodSecurity" not in result.stderr, str(result)
