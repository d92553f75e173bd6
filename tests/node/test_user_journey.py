"""The user's journey on a real node, every command as the README prints it (real helm and kubectl).

The README's ``helm-local`` block installs the chart with the locally built
images (imported into the node's containerd, no registry); its ``day-two``
block rolls, scales, upgrades and uninstalls. Between them the test sets up
what a user would (a server Deployment, its Service and GrpcTarget, a client
Deployment annotated for the webhook) and reads what the client's container
logs: one line per call, naming the server Pod that answered.

The node runs kubelet (its ConfigMap mounts lag by up to its sync period),
containerd and a real kube-proxy, so a Service's ClusterIP works from Pods and
from the apiserver (which calls the webhook through it): the ClusterIP
fallback is real, and carries the calls while the mounted file lists Pods
that are gone.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Set
from pathlib import Path

import pytest
import urllib3
from kubernetes import client

from testenv.images import BuiltImage, ensure_images, import_into_containerd
from testenv.kube_proxy import KubeProxy
from testenv.node import Node
from testenv.node_cluster import NodeCluster
from testenv.node_config import SYNC_FREQUENCY_S
from testenv.node_journey import (
    CLIENT_RATE,
    OPERATOR_NAMESPACE,
    OPERATOR_SELECTOR,
    Call,
    between,
    calls,
    client_yaml,
    endpoints,
    lease_holder,
    lone_client_yaml,
    mounted_client_yaml,
    ready_pods,
    server_yaml,
    wait_for_webhook,
)
from testenv.tools import UserShell
from testenv.wait import until
from tests.adoption.conftest import readme_block
from tests.node.workloads import http_get

# The first test also sets up the module: the images (built when missing, one build at a
# time on the machine), the operator and its webhook.
pytestmark = pytest.mark.timeout(1800)

TRANSIENT = (client.ApiException, urllib3.exceptions.HTTPError, OSError)
"""What a wait retries: the API or a Pod not answering yet (never a bug in the test)."""
REFRESH_BOUND_S = 3 * SYNC_FREQUENCY_S
"""Well above kubelet's refresh of a mounted ConfigMap (its sync period plus jitter)."""
POD_START_S = 120
"""A Pod's start on the node: image unpacked, sandbox and container started, probe passed."""


@pytest.fixture(scope="module")
def node(node_cluster: NodeCluster) -> Node:
    return node_cluster.scale(1)[0]


@pytest.fixture(scope="module")
def kube_proxy(node_cluster: NodeCluster, node: Node) -> Iterator[KubeProxy]:
    """A real kube-proxy for the node: Pods and the apiserver reach ClusterIPs."""
    with KubeProxy(node_cluster.control_plane, node=node.name, address=None) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def images(node: Node) -> dict[str, BuiltImage]:
    """The operator, projector and test images, built if missing, in the node's containerd."""
    built = ensure_images(("operator", "projector", "backend", "client"))
    import_into_containerd(built.values(), str(node.layout.containerd_socket))
    return built


@pytest.fixture(scope="module")
def installed(
    node_cluster: NodeCluster,
    kube_proxy: KubeProxy,
    images: dict[str, BuiltImage],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[UserShell]:
    """The README's ``helm-local`` block, run verbatim: the chart with the local images."""
    admin = UserShell(node_cluster.control_plane.admin_kubeconfig)
    admin.env["OPERATOR_TAG"] = images["operator"].tag
    admin.env["PROJECTOR_TAG"] = images["projector"].tag
    for line in readme_block("helm-local"):
        admin.run(line, timeout_s=300)
    yield admin
    if admin.run(f"helm status kuberesolver -n {OPERATOR_NAMESPACE}", check=False).returncode == 0:
        admin.run(f"helm uninstall kuberesolver -n {OPERATOR_NAMESPACE} --wait")


def user_in(installed: UserShell, namespace: str, workdir: Path) -> UserShell:
    """A user whose kubectl context is ``namespace`` (``kubectl config set-context``)."""
    kubeconfig = workdir / "kubeconfig"
    kubeconfig.write_text(Path(installed.env["KUBECONFIG"]).read_text())
    user = UserShell(kubeconfig)
    user.env.update({k: v for k, v in installed.env.items() if k.endswith("_TAG")})
    user.run(f"kubectl config set-context --current --namespace={namespace}")
    return user


def apply(user: UserShell, manifest: str) -> str:
    """``kubectl apply -f -`` with ``manifest`` on stdin; its stderr (admission warnings)."""
    return user.run(f"kubectl apply -f - <<'EOF'\n{manifest}EOF").stderr


# --- bad input on the node ---------------------------------------------------------------------


def test_a_client_pod_for_a_target_that_does_not_exist_starts_and_says_why(
    installed: UserShell,
    images: dict[str, BuiltImage],
    node_api: client.ApiClient,
    node_namespace: str,
    tmp_path: Path,
) -> None:
    user = user_in(installed, node_namespace, tmp_path)
    core = client.CoreV1Api(node_api)
    wait_for_webhook(node_api)
    target = f"nosuch.{node_namespace}"
    warned = apply(
        user,
        lone_client_yaml("lost", images["client"].ref, f"kubernetes:///{target}:grpc", "nosuch"),
    )
    # The webhook admits it unchanged and says why, as kubectl prints it.
    assert "Warning:" in warned, warned
    assert "nosuch" in warned, warned
    pod = core.read_namespaced_pod("lost", node_namespace)
    assert not [v for v in pod.spec.volumes or [] if v.config_map], pod.spec.volumes
    # Its container starts, and its log names the snapshot it lacks.
    until(
        lambda: f"no snapshot for {target}" in log_text(core, node_namespace, "lost"),
        timeout_s=POD_START_S,
        interval_s=1,
        retry_on=TRANSIENT,
        message="the client's log to say which snapshot it lacks",
    )


def log_text(core: client.CoreV1Api, namespace: str, pod: str) -> str:
    response = core.read_namespaced_pod_log(pod, namespace, _preload_content=False)
    return str(response.data.decode(errors="replace"))


def test_a_client_pod_whose_mount_is_missing_does_not_crash_loop(
    installed: UserShell,
    images: dict[str, BuiltImage],
    node_api: client.ApiClient,
    node_namespace: str,
    tmp_path: Path,
) -> None:
    user = user_in(installed, node_namespace, tmp_path)
    core = client.CoreV1Api(node_api)
    # Not labelled for the webhook: nothing mounts the snapshot the client reads.
    manifest = lone_client_yaml(
        "unmounted", images["client"].ref, f"kubernetes:///server.{node_namespace}:grpc", None
    ).replace(', kuberesolver.io/inject: "true"', "")
    apply(user, manifest)
    says_why_and_keeps_running(core, node_namespace, "unmounted", "server")


def says_why_and_keeps_running(
    core: client.CoreV1Api, namespace: str, pod: str, target: str
) -> None:
    """The client runs, each failed call names the missing snapshot, and it never restarts."""

    def failed_calls() -> list[Call]:
        status = core.read_namespaced_pod(pod, namespace).status
        (container,) = status.container_statuses or [None]
        assert container is None or container.restart_count == 0, (
            f"the client restarted: {container.last_state}"
        )
        found = [c for c in calls(core, namespace, pod) if not c.ok]
        assert all(c.error and f"{target}.{namespace}" in c.error for c in found), found[:3]
        # Two seconds of calls, each failing with the reason, in one container.
        return found if len(found) >= 2 * CLIENT_RATE else []

    until(
        failed_calls,
        timeout_s=POD_START_S,
        interval_s=1,
        retry_on=TRANSIENT,
        message=f"client {pod} to run and say why each call fails",
    )


# --- the journey -------------------------------------------------------------------------------


def test_the_users_journey_on_a_real_node(
    installed: UserShell,
    images: dict[str, BuiltImage],
    node_api: client.ApiClient,
    node_namespace: str,
    tmp_path: Path,
) -> None:
    ns = node_namespace
    user = user_in(installed, ns, tmp_path)
    day_two = {line.split(" --")[0]: line for line in readme_block("day-two")}
    core = client.CoreV1Api(node_api)

    operators_ready_through_their_probe(core)
    wait_for_webhook(node_api)

    apply(user, server_yaml(images["backend"].ref))
    servers = until(
        lambda: names_if(ready_pods(core, ns, "app=server"), 3),
        timeout_s=POD_START_S,
        interval_s=0.5,
        retry_on=TRANSIENT,
        message="three Ready server Pods",
    )
    until(
        lambda: len(endpoints(node_api, ns)) == 3,
        timeout_s=60,
        interval_s=0.5,
        retry_on=TRANSIENT,
        message="the three server Pods published",
    )

    apply(user, client_yaml(images["client"].ref, ns))
    (client_pod,) = until(
        lambda: ready_pods(core, ns, "app=client"),
        timeout_s=POD_START_S,
        interval_s=0.5,
        retry_on=TRANSIENT,
        message="the client Pod running",
    )
    the_webhook_mounted_the_config_map(client_pod, ns)
    log_of = client_pod.metadata.name
    balanced_over(core, ns, log_of, servers, timeout_s=60)

    # A rollout under load: the mounted file lists Pods that are gone for up to
    # kubelet's sync period; the ClusterIP fallback carries the calls meanwhile.
    started = time.time()
    user.run(day_two["kubectl rollout restart deployment/server"])
    new_servers = until(
        lambda: names_if(ready_pods(core, ns, "app=server"), 3, besides=servers),
        timeout_s=POD_START_S * 3,
        interval_s=0.5,
        retry_on=TRANSIENT,
        message="three new Ready server Pods, the old ones gone",
    )
    rolled = time.time()
    # Until kubelet refreshes the mount, the calls ride the fallback; then per Pod again.
    balanced_over(core, ns, log_of, new_servers, timeout_s=REFRESH_BOUND_S)
    settled = time.time()
    window = between(calls(core, ns, log_of), started, settled)
    lost = [c for c in window if not c.ok]
    print(
        f"rollout: {rolled - started:.1f} s; the client balanced over the new Pods "
        f"{settled - rolled:.1f} s later; {len(window)} calls, {len(lost)} failed"
    )
    assert len(window) >= CLIENT_RATE * (settled - started) / 2, "the client stalled"
    assert lost == [], f"{len(lost)} of {len(window)} calls failed: {lost[:5]}"

    # An upgrade with a changed value rolls the operator; the clients never notice (the mount
    # is fresh and stays the same: the rollout's Pods are balanced over, the last check).
    before = {p.metadata.name for p in core.list_namespaced_pod(OPERATOR_NAMESPACE).items}
    upgraded_from = time.time()
    user.run(day_two["helm upgrade kuberesolver charts/kuberesolver"], timeout_s=300)
    upgraded = until(
        lambda: (
            names_if(ready_pods(core, OPERATOR_NAMESPACE, OPERATOR_SELECTOR), 2, besides=before)
            & upgraded_operators(core)
        ),
        timeout_s=POD_START_S * 2,
        interval_s=0.5,
        retry_on=TRANSIENT,
        message="two operator replicas of the upgrade Ready, and no other",
    )
    for pod in ready_pods(core, OPERATOR_NAMESPACE, OPERATOR_SELECTOR):
        until(
            lambda ip=pod.status.pod_ip: (
                "kuberesolver_operator_targets" in http_get(ip, "/metrics", port=9100)[1]
            ),
            timeout_s=30,
            interval_s=0.5,
            retry_on=TRANSIENT,
            message=f"metrics on port 9100 of {pod.metadata.name}",
        )
    upgrade_window = between(calls(core, ns, log_of), upgraded_from, time.time())
    assert upgrade_window, "the client stalled"
    failed = [c for c in upgrade_window if not c.ok]
    assert failed == [], f"{len(failed)} of {len(upgrade_window)} calls failed: {failed[:5]}"
    print(f"upgrade: operator replicas {sorted(upgraded)}, {len(upgrade_window)} calls, 0 failed")

    # The leader goes; the other replica takes over and publishes what follows.
    leader = until(lambda: lease_holder(node_api), timeout_s=30, message="a Lease holder")
    others = {p.metadata.name for p in ready_pods(core, OPERATOR_NAMESPACE, OPERATOR_SELECTOR)}
    assert leader in others, (leader, others)
    core.delete_namespaced_pod(leader, OPERATOR_NAMESPACE)
    until(
        lambda: lease_holder(node_api) in others - {leader},
        timeout_s=60,
        interval_s=0.5,
        retry_on=TRANSIENT,
        message=f"the other operator replica to take the Lease from {leader}",
    )

    user.run(scale_line(0))
    until(
        lambda: endpoints(node_api, ns) == [],
        timeout_s=60,
        interval_s=0.5,
        retry_on=TRANSIENT,
        message="the new leader to publish no endpoints",
    )
    user.run(scale_line(3))
    back = until(
        lambda: names_if(ready_pods(core, ns, "app=server"), 3, besides=new_servers),
        timeout_s=POD_START_S,
        interval_s=0.5,
        retry_on=TRANSIENT,
        message="three Ready server Pods again",
    )
    back_at = time.time()
    until(
        lambda: calls_succeed_since(core, ns, log_of, back_at),
        timeout_s=30,
        interval_s=0.5,
        retry_on=TRANSIENT,
        message="the client's calls to succeed again",
    )
    until(
        lambda: len(endpoints(node_api, ns)) == 3,
        timeout_s=60,
        interval_s=0.5,
        retry_on=TRANSIENT,
        message="the three new server Pods published",
    )

    # The file lags the scale from zero; once it catches up, calls are per Pod again, and
    # after the uninstall they stay on that last snapshot.
    balanced_over(core, ns, log_of, back, timeout_s=REFRESH_BOUND_S)
    the_uninstall_is_as_the_readme_says(user, day_two, core, node_api, ns, log_of, images, back)


def scale_line(replicas: int) -> str:
    """The README's ``kubectl scale`` line to ``replicas``."""
    (line,) = [
        v
        for v in readme_block("day-two")
        if v.startswith("kubectl scale") and v.endswith(f"={replicas}")
    ]
    return line


def names_if(pods: list[client.V1Pod], count: int, besides: Set[str] = frozenset()) -> set[str]:
    """The Pods' names when there are exactly ``count``, none of them in ``besides``."""
    names = {p.metadata.name for p in pods}
    return names if len(names) == count and not names & besides else set()


def upgraded_operators(core: client.CoreV1Api) -> set[str]:
    """The operator Pods that run with the upgrade's value, when every one of them does."""
    pods = core.list_namespaced_pod(OPERATOR_NAMESPACE, label_selector=OPERATOR_SELECTOR).items
    upgraded = {
        p.metadata.name
        for p in pods
        for c in p.spec.containers
        for e in c.env or []
        if e.name == "KUBERESOLVER_METRICS_PORT" and e.value == "9100"
    }
    return upgraded if len(upgraded) == len(pods) else set()


def operators_ready_through_their_probe(core: client.CoreV1Api) -> None:
    pods = ready_pods(core, OPERATOR_NAMESPACE, OPERATOR_SELECTOR)
    assert len(pods) == 2, [p.metadata.name for p in pods]
    for pod in pods:
        (container,) = pod.spec.containers
        assert container.readiness_probe.http_get.path == "/readyz", container.readiness_probe
        assert container.image.startswith("localhost/kuberesolver-operator:"), container.image


def the_webhook_mounted_the_config_map(pod: client.V1Pod, namespace: str) -> None:
    mounted = {m.mount_path: m.name for c in pod.spec.containers for m in c.volume_mounts or []}
    path = f"/var/run/kuberesolver/server.{namespace}"
    assert path in mounted, mounted
    (volume,) = [v for v in pod.spec.volumes if v.name == mounted[path]]
    assert volume.config_map.name == "server", volume


def balanced_over(
    core: client.CoreV1Api, namespace: str, pod: str, servers: set[str], timeout_s: float
) -> None:
    """Wait until the client's last two seconds of calls reached each of ``servers``, only."""

    def balanced() -> bool:
        log = calls(core, namespace, pod)
        if not log:
            return False
        recent = between(log, log[-1].t - 2, log[-1].t)
        return {c.pod for c in recent} == servers

    until(
        balanced,
        timeout_s=timeout_s,
        interval_s=1,
        retry_on=TRANSIENT,
        message=f"the client to balance over {sorted(servers)}",
    )


def calls_succeed_since(core: client.CoreV1Api, namespace: str, pod: str, since: float) -> bool:
    recent = between(calls(core, namespace, pod), since, time.time())
    return len(recent) >= CLIENT_RATE and all(c.ok for c in recent[-CLIENT_RATE:])


def the_uninstall_is_as_the_readme_says(
    user: UserShell,
    day_two: dict[str, str],
    core: client.CoreV1Api,
    api: client.ApiClient,
    namespace: str,
    log_of: str,
    images: dict[str, BuiltImage],
    servers: set[str],
) -> None:
    """The CRD, every GrpcTarget and its ConfigMap stay; running clients keep balancing over
    the last snapshot, which no longer follows scale-ups; a Pod that names the ConfigMap in
    its own spec still mounts it; one that relied on the annotation starts without it."""
    published = core.read_namespaced_config_map("server", namespace).data
    user.run(day_two["helm uninstall kuberesolver"], timeout_s=300)
    until(
        lambda: not core.list_namespaced_pod(OPERATOR_NAMESPACE).items,
        timeout_s=60,
        interval_s=0.5,
        retry_on=TRANSIENT,
        message="the operator's Pods gone",
    )
    user.run("kubectl get crd grpctargets.kuberesolver.io")
    user.run("kubectl get grpctarget server")
    user.run(scale_line(3).replace("=3", "=4"))
    until(
        lambda: len(ready_pods(core, namespace, "app=server")) == 4,
        timeout_s=POD_START_S,
        interval_s=0.5,
        retry_on=TRANSIENT,
        message="a fourth server Pod Ready",
    )
    after = time.time()
    recent = until(
        lambda: (
            [c for c in between(calls(core, namespace, log_of), after, time.time())]
            if calls_succeed_since(core, namespace, log_of, after)
            else []
        ),
        timeout_s=30,
        interval_s=0.5,
        retry_on=TRANSIENT,
        message="a second of the client's calls after the uninstall and the scale-up",
    )
    assert all(c.ok for c in recent), [c for c in recent if not c.ok][:5]
    assert {c.pod for c in recent} == servers, "the client balances over the last snapshot only"
    assert core.read_namespaced_config_map("server", namespace).data == published

    target = f"kubernetes:///server.{namespace}:grpc"
    apply(user, lone_client_yaml("late", images["client"].ref, target, "server"))
    pod = core.read_namespaced_pod("late", namespace)
    assert not [v for v in pod.spec.volumes or [] if v.config_map], pod.spec.volumes
    apply(user, mounted_client_yaml("named", images["client"].ref, target, "server", namespace))
    until(
        lambda: calls_succeed_since(core, namespace, "named", 0),
        timeout_s=POD_START_S,
        interval_s=0.5,
        retry_on=TRANSIENT,
        message="a client that names the ConfigMap in its own spec to call",
    )
