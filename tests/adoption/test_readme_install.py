"""The README's install and example commands, run verbatim with real kubectl on a fresh cluster.

The test stands in only for what the control plane lacks: a kubelet. After
``kubectl apply -k manifests/`` it runs the operator as a local process under
the token of the ``kuberesolver-operator`` ServiceAccount that the install
created (the Deployment's pods cannot run without a kubelet); after the
example is applied it reports two greeter pods Running and Ready.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from kubernetes import client

from testenv import ControlPlane
from testenv.netns import pod_ip
from testenv.operator_process import OperatorProcess
from testenv.tools import Result, UserShell
from testenv.wait import until
from tests.adoption._kubelet import operator_token_kubeconfig, run_pod
from tests.adoption.conftest import readme_block

pytestmark = pytest.mark.integration

SPEC_FIELDS = (
    "service", "serviceNamespace", "port", "configMapName", "loadBalancing",
    "includeTerminating", "addressFamily", "serviceConfig", "templates",
)  # fmt: skip


@pytest.fixture(scope="module")
def session(
    fresh_control_plane: ControlPlane, fresh_admin: client.ApiClient, user: UserShell
) -> Iterator[dict[str, Result]]:
    """Every README line of the install and example blocks, run in order; outputs by line."""
    outputs: dict[str, Result] = {}
    operators: list[OperatorProcess] = []
    try:
        for line in readme_block("install") + readme_block("example"):
            outputs[line] = user.run(line)
            if line.startswith("kubectl apply -k manifests"):
                kubeconfig = operator_token_kubeconfig(fresh_control_plane, fresh_admin)
                operators.append(OperatorProcess(kubeconfig, name="readme").start())
            if line.startswith("kubectl apply -f manifests/examples/greeter.yaml"):
                for i in (1, 2):
                    run_pod(fresh_admin, "demo", f"greeter-{i}", pod_ip(40 + i), {"app": "greeter"})
                # As a user waits for their pods, before looking: both are published.
                until(
                    lambda: _ready(fresh_admin) == 2,
                    timeout_s=60,
                    message="both greeter pods published",
                )
        yield outputs
    finally:
        for op in operators:
            op.stop()


def _ready(api: client.ApiClient) -> int:
    gt = client.CustomObjectsApi(api).get_namespaced_custom_object(
        "kuberesolver.io", "v1alpha1", "demo", "grpctargets", "greeter"
    )
    return int(gt.get("status", {}).get("readyEndpoints", -1))


def _output(session: dict[str, Result], prefix: str) -> str:
    (result,) = [r for line, r in session.items() if line.startswith(prefix)]
    return result.stdout


def test_the_readme_blocks_are_what_a_user_types() -> None:
    lines = readme_block("install") + readme_block("example")
    assert lines[0] == "kubectl apply -f crds/"
    assert all(ln.startswith("kubectl ") for ln in lines)
    assert any(ln.startswith("kubectl apply -k manifests/") for ln in lines)


def test_every_command_succeeds_the_first_time(session: dict[str, Result]) -> None:
    for result in session.values():
        assert result.returncode == 0, str(result)
        assert "error" not in result.stderr.lower(), str(result)


def test_the_install_creates_everything(session: dict[str, Result]) -> None:
    applied = _output(session, "kubectl apply -k manifests/")
    for obj in (
        "namespace/kuberesolver-system created",
        "serviceaccount/kuberesolver-operator created",
        "clusterrole.rbac.authorization.k8s.io/kuberesolver-operator created",
        "role.rbac.authorization.k8s.io/kuberesolver-operator-leader created",
        "deployment.apps/kuberesolver-operator created",
        "service/kuberesolver-operator-metrics created",
        "poddisruptionbudget.policy/kuberesolver-operator created",
        "networkpolicy.networking.k8s.io/kuberesolver-operator created",
    ):
        assert obj in applied, applied
    waited = _output(session, "kubectl wait --for=condition=Established")
    assert "grpctargets.kuberesolver.io condition met" in waited


def test_get_gt_shows_the_published_target(session: dict[str, Result]) -> None:
    table = _output(session, "kubectl get gt -A -o wide")
    header, *rows = table.splitlines()
    assert header.split() == [
        "NAMESPACE", "NAME", "SERVICE", "PORT", "READY", "TOTAL", "REVISION", "STATUS", "AGE",
    ]  # fmt: skip
    (row,) = rows
    cells = row.split()
    assert cells[:6] == ["demo", "greeter", "greeter", "grpc", "2", "2"], table
    assert int(cells[6]) >= 1, table  # the revision: 1 or 2 changes, as the pods came
    assert cells[7] == "Published", table


def test_describe_gt_shows_status_and_conditions(session: dict[str, Result]) -> None:
    text = _output(session, "kubectl describe gt")
    assert re.search(r"Ready Endpoints:\s+2\n", text), text
    assert re.search(r"Config Map Name:\s+greeter\n", text), text
    for kind in ("Ready", "ServiceFound", "Rendered"):
        assert re.search(rf"Type:\s+{kind}\n", text), text
    assert "Published" in text
    assert "2 of 2 endpoints ready, revision " in text


def test_explain_spec_describes_every_field(session: dict[str, Result]) -> None:
    text = _output(session, "kubectl explain grpctarget.spec")
    assert "<no description>" not in text, text
    assert "<empty>" not in text, text
    assert "DESCRIPTION:\n    Which Service port to publish" in text, text
    for field in SPEC_FIELDS:
        assert re.search(rf"^  {field}\t<", text, re.MULTILINE), (field, text)
    # kubectl names no type for x-kubernetes-int-or-string (it prints <Object>),
    # so the description says it first.
    assert re.search(r"^  port\t<\w+>\n    int or string: ", text, re.MULTILINE), text
    assert re.search(r"^  service\t<string> -required-", text, re.MULTILINE), text
