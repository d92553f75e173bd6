"""What the operator may not read, on a real node: it says so, and serves the rest.

The chart is installed in namespaced mode (``watchNamespaces``: one namespace),
with the xDS server on (so it watches Pods) and a webhook ``namespaceSelector``
wider than the watched namespace, as a user may set it. Two refusals follow:

- a client Pod in a namespace the operator does not watch (it has no Role
  there: its GrpcTargets are forbidden to it) is admitted unchanged; the Pod
  gets an Event saying why, and its container starts and logs why each call
  fails, without restarting;
- the operator's right to list and watch Pods is taken away and its Pods
  restarted: each logs one line naming what is missing, becomes Ready (Pods
  are optional), publishes the ConfigMap of a new GrpcTarget and still mounts
  it into a Pod through the webhook.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from testenv.images import BuiltImage
from testenv.kube import create_namespace
from testenv.node_cluster import NodeCluster
from testenv.tools import UserShell
from testenv.wait import until
from tests.node.journey import (
    OPERATOR_NAMESPACE,
    OPERATOR_SELECTOR,
    endpoints,
    lone_client_yaml,
    ready_pods,
    server_yaml,
)
from tests.node.test_user_journey import (  # the module's node, kube-proxy and images
    POD_START_S,
    TRANSIENT,
    apply,
    images,
    kube_proxy,
    log_text,
    node,
    says_why_and_keeps_running,
    user_in,
    wait_for_webhook,
)

__all__ = ["images", "kube_proxy", "node"]  # fixtures, used by name

# The first test also sets up the module: the images (built when missing, one build at a
# time on the machine) and the chart.
pytestmark = pytest.mark.timeout(1800)

OPERATOR = "kuberesolver-operator"
REFUSED = "the API refused it"
"""The operator's line for a list the API refuses (kuberesolver.operator.runtime.informer)."""


@pytest.fixture(scope="module")
def spaces(node_api: client.ApiClient) -> Iterator[tuple[str, str]]:
    """(the watched namespace, one that is not), created for the module."""
    tag = uuid.uuid4().hex[:8]
    names = (create_namespace(node_api, f"w-{tag}"), create_namespace(node_api, f"o-{tag}"))
    yield names
    for name in names:
        client.CoreV1Api(node_api).delete_namespace(name, propagation_policy="Background")


@pytest.fixture(scope="module")
def installed(
    node_cluster: NodeCluster,
    kube_proxy: object,
    images: dict[str, BuiltImage],
    spaces: tuple[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[UserShell]:
    """The chart with the local images, namespaced, xDS on, the webhook over both namespaces."""
    watched, outside = spaces
    values = tmp_path_factory.mktemp("values") / "values.yaml"
    values.write_text(
        json.dumps(
            {
                "image": {
                    "repository": "localhost/kuberesolver-operator",
                    "tag": images["operator"].tag,
                    "pullPolicy": "Never",
                },
                "projector": {
                    "image": {
                        "repository": "localhost/kuberesolver-projector",
                        "tag": images["projector"].tag,
                        "pullPolicy": "Never",
                    }
                },
                "watchNamespaces": [watched],
                "xds": {"enabled": True, "podReadiness": True},
                "webhook": {
                    "namespaceSelector": {
                        "matchExpressions": [
                            {
                                "key": "kubernetes.io/metadata.name",
                                "operator": "In",
                                "values": [watched, outside],
                            }
                        ]
                    }
                },
            }
        )
    )
    admin = UserShell(node_cluster.control_plane.admin_kubeconfig)
    admin.run(
        f"helm install kuberesolver charts/kuberesolver --namespace {OPERATOR_NAMESPACE} "
        f"--create-namespace -f {values}",
        timeout_s=300,
    )
    admin.run(
        f"kubectl rollout status deployment/{OPERATOR} --namespace {OPERATOR_NAMESPACE} "
        "--timeout=180s",
        timeout_s=200,
    )
    yield admin
    admin.run(f"helm uninstall kuberesolver -n {OPERATOR_NAMESPACE} --wait", timeout_s=300)


def test_a_client_pod_for_a_forbidden_target_starts_and_says_why(
    installed: UserShell,
    images: dict[str, BuiltImage],
    node_api: client.ApiClient,
    spaces: tuple[str, str],
    tmp_path: Path,
) -> None:
    _, outside = spaces
    core = client.CoreV1Api(node_api)
    user = user_in(installed, outside, tmp_path)
    wait_for_webhook(node_api)
    # The GrpcTarget exists; the operator may not read it (no Role in this namespace).
    apply(user, server_yaml(images["backend"].ref, replicas=0))
    warned = apply(
        user,
        lone_client_yaml(
            "forbidden", images["client"].ref, f"kubernetes:///server.{outside}:grpc", "server"
        ),
    )
    # The webhook admits it unchanged, and kubectl prints why.
    assert "Warning:" in warned, warned
    assert f"namespace {outside!r} is not watched by kuberesolver" in warned, warned
    pod = core.read_namespaced_pod("forbidden", outside)
    assert not [v for v in pod.spec.volumes or [] if v.config_map], pod.spec.volumes

    # An Event about the Pod says the same (kubectl get events --field-selector ...).
    (event,) = until(
        lambda: (
            core.list_namespaced_event(
                outside, field_selector="involvedObject.name=forbidden,reason=InjectionSkipped"
            ).items
        ),
        timeout_s=30,
        interval_s=0.5,
        retry_on=TRANSIENT,
        message="an InjectionSkipped Event about Pod forbidden",
    )
    assert event.type == "Warning", event
    assert event.involved_object.kind == "Pod", event.involved_object
    assert "is not watched by kuberesolver" in event.message, event.message

    # Its container starts; its log names the snapshot it lacks, call after call, and it
    # never restarts.
    until(
        lambda: f"no snapshot for server.{outside}" in log_text(core, outside, "forbidden"),
        timeout_s=POD_START_S,
        interval_s=1,
        retry_on=TRANSIENT,
        message="the client's log to say which snapshot it lacks",
    )
    says_why_and_keeps_running(core, outside, "forbidden", "server")


def test_an_operator_without_the_right_to_watch_pods_says_so_once_and_serves_the_rest(
    installed: UserShell,
    images: dict[str, BuiltImage],
    node_api: client.ApiClient,
    spaces: tuple[str, str],
    tmp_path: Path,
) -> None:
    watched, _ = spaces
    core = client.CoreV1Api(node_api)
    account = f"system:serviceaccount:{OPERATOR_NAMESPACE}:{OPERATOR}"
    can_list_pods = f"kubectl auth can-i list pods --namespace {watched} --as={account}"
    assert installed.run(can_list_pods).stdout.strip() == "yes"
    installed.run(f"kubectl delete rolebinding {OPERATOR}-xds-pods --namespace {watched}")
    until(
        lambda: installed.run(can_list_pods, check=False).stdout.strip() == "no",
        timeout_s=30,
        interval_s=0.5,
        message="the operator's right to list Pods gone",
    )

    # Its Pods start again without it, and become Ready all the same.
    before = {p.metadata.name for p in core.list_namespaced_pod(OPERATOR_NAMESPACE).items}
    installed.run(f"kubectl rollout restart deployment/{OPERATOR} --namespace {OPERATOR_NAMESPACE}")
    installed.run(
        f"kubectl rollout status deployment/{OPERATOR} --namespace {OPERATOR_NAMESPACE} "
        "--timeout=180s",
        timeout_s=200,
    )
    restarted = until(
        lambda: [
            p.metadata.name
            for p in ready_pods(core, OPERATOR_NAMESPACE, OPERATOR_SELECTOR)
            if p.metadata.name not in before
        ],
        timeout_s=60,
        interval_s=0.5,
        retry_on=TRANSIENT,
        message="the restarted operator Pods Ready",
    )

    def refusals(pod: str) -> list[str]:
        logs = installed.run(f"kubectl logs {pod} --namespace {OPERATOR_NAMESPACE}").stdout
        return [line for line in logs.splitlines() if REFUSED in line]

    for pod in restarted:
        until(
            lambda pod=pod: refusals(pod),
            timeout_s=60,
            interval_s=1,
            retry_on=TRANSIENT,
            message=f"operator Pod {pod} to say what it may not read",
        )

    # The rest is served: a new target's ConfigMap is published from its Pods' slice ...
    user = user_in(installed, watched, tmp_path)
    apply(user, server_yaml(images["backend"].ref, replicas=1))
    (server,) = until(
        lambda: ready_pods(core, watched, "app=server"),
        timeout_s=POD_START_S,
        interval_s=0.5,
        retry_on=TRANSIENT,
        message="the server Pod Ready",
    )
    until(
        lambda: endpoints(node_api, watched) == [server.status.pod_ip],
        timeout_s=60,
        interval_s=0.5,
        retry_on=TRANSIENT,
        message="the server Pod published in ConfigMap server",
    )
    # ... and the webhook mounts it into a client Pod.
    target = f"kubernetes:///server.{watched}:grpc"
    warned = apply(user, lone_client_yaml("mounted", images["client"].ref, target, "server"))
    assert "Warning:" not in warned, warned
    pod = core.read_namespaced_pod("mounted", watched)
    assert [v.config_map.name for v in pod.spec.volumes if v.config_map] == ["server"]

    # All along, one line per operator Pod said what is missing, and what it costs.
    for pod_name in restarted:
        (line,) = refusals(pod_name)
        assert f"pods in {watched}: {REFUSED} (403 Forbidden)" in line, line
        assert "grant list and watch on pods" in line, line
        assert "the xDS feed follows the EndpointSlices alone" in line, line
