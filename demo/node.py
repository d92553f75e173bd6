"""`make demo-node`: a real rollout through a real kubelet mount, the fallback carrying the calls.

1. Start a control plane (with kube-scheduler and the Deployment controllers)
   and one real node (kubelet, containerd, runc, CNI, kube-proxy), inside a
   private network namespace.
2. Build the images with buildah (cached), load them into the node's
   containerd, and ``helm install`` the chart with them.
3. Deploy 3 gRPC server Pods (Deployment, Service, GrpcTarget) and a client
   Pod annotated ``kuberesolver.io/targets: server``: the webhook injects the
   ConfigMap's volume and kubelet mounts it.
4. ``kubectl rollout restart deployment/server`` while the client calls; the
   demo watches the mounted file on the node, to see when kubelet refreshes
   it, and counts the calls answered by a Pod the file did not list yet:
   those went through the Service's ClusterIP (kube-proxy), the fallback.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kubernetes import client

import kuberesolver.core.snapshot
from testenv import ensure_binaries
from testenv.images import BuiltImage, ensure_images, import_into_containerd
from testenv.kube import api_client, create_namespace
from testenv.kube_proxy import KubeProxy
from testenv.netns import enter_private_network
from testenv.node import Node
from testenv.node_cluster import NodeCluster
from testenv.tools import UserShell
from testenv.wait import WaitTimeout, until
from tests.node.journey import (
    OPERATOR_NAMESPACE,
    Call,
    between,
    calls,
    client_yaml,
    endpoints,
    ready_pods,
    server_yaml,
)

NS = "demo"
HELM_INSTALL = (
    "helm install kuberesolver charts/kuberesolver --namespace kuberesolver-system "
    "--create-namespace --set image.repository=localhost/kuberesolver-operator "
    "--set image.tag=$OPERATOR_TAG --set image.pullPolicy=Never "
    "--set projector.image.repository=localhost/kuberesolver-projector "
    "--set projector.image.tag=$PROJECTOR_TAG --set projector.image.pullPolicy=Never"
)
"""The README's install with locally built images (its ``helm-local`` block)."""
TRANSIENT = (client.ApiException, OSError)
POD_START_S = 180
BALANCE_S = 120
"""From the first calls, or from the file's refresh, to calls spread over every server Pod."""
REFRESH_BOUND_S = 180
"""Well above kubelet's refresh of a mounted ConfigMap (its 60 s sync period, plus jitter)."""


def say(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m", flush=True)


def run(user: UserShell, command: str, timeout_s: float = 300) -> str:
    print(f"  $ {command}", flush=True)
    return user.run(command, timeout_s=timeout_s).stdout


class MountWatch:
    """Polls the client Pod's mounted ``endpoints.json`` on the node: when it changed, to what."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.changes: list[tuple[float, frozenset[str]]] = [(0.0, self.pods())]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mount-watch", daemon=True)

    def pods(self) -> frozenset[str]:
        snapshot = kuberesolver.core.snapshot.load(self.path)
        return frozenset(e.pod for e in snapshot.endpoints if e.pod)

    def listed_at(self, t: float) -> frozenset[str]:
        """The Pods the file listed at time ``t``."""
        return [pods for changed, pods in self.changes if changed <= t][-1]

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            try:
                now = self.pods()
            except (OSError, kuberesolver.core.snapshot.SnapshotError):
                continue  # kubelet swaps the ..data link: read again next time
            if now != self.changes[-1][1]:
                self.changes.append((time.time(), now))

    @contextmanager
    def running(self) -> Iterator[MountWatch]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()


def main() -> int:
    ensure_binaries()
    enter_private_network()
    t0 = time.monotonic()
    say("Starting a control plane and one real node (kubelet, containerd, runc, CNI)")
    with NodeCluster() as cluster:
        (node,) = cluster.scale(1)
        print(f"  node {node.name} Ready in {time.monotonic() - t0:.0f} s")
        with KubeProxy(cluster.control_plane, node=node.name, address=None):
            return on_the_node(cluster, node, t0)


def on_the_node(cluster: NodeCluster, node: Node, t0: float) -> int:
    say("Building the images with buildah (cached) and loading them into containerd")
    images = ensure_images(("operator", "projector", "backend", "client"))
    import_into_containerd(images.values(), str(node.layout.containerd_socket))
    for built in images.values():
        print(f"  {built.ref}")

    admin = UserShell(cluster.control_plane.admin_kubeconfig)
    admin.env["OPERATOR_TAG"] = images["operator"].tag
    admin.env["PROJECTOR_TAG"] = images["projector"].tag
    say("Installing the chart with those images")
    run(admin, HELM_INSTALL)
    run(admin, f"kubectl rollout status deployment/kuberesolver-operator -n {OPERATOR_NAMESPACE}")
    api = api_client(cluster.control_plane.admin_kubeconfig)
    try:
        return rollout(admin, api, node, images, t0)
    finally:
        api.close()  # type: ignore[no-untyped-call]


def rollout(
    admin: UserShell, api: client.ApiClient, node: Node, images: dict[str, BuiltImage], t0: float
) -> int:
    core = client.CoreV1Api(api)
    create_namespace(api, NS)
    admin.run(f"kubectl config set-context --current --namespace={NS}")
    say("3 server Pods (Deployment, Service, GrpcTarget) and an annotated client")
    apply(admin, server_yaml(images["backend"].ref))
    old = until(
        lambda: names(ready_pods(core, NS, "app=server"), 3),
        timeout_s=POD_START_S,
        interval_s=0.5,
        retry_on=TRANSIENT,
        message="three Ready server Pods",
    )
    until(
        lambda: len(endpoints(api, NS)) == 3,
        timeout_s=60,
        interval_s=0.5,
        retry_on=TRANSIENT,
        message="the three server Pods published",
    )
    apply(admin, client_yaml(images["client"].ref, NS))
    (pod,) = until(
        lambda: ready_pods(core, NS, "app=client"),
        timeout_s=POD_START_S,
        interval_s=0.5,
        retry_on=TRANSIENT,
        message="the client Pod running",
    )
    volume = f"{node.layout.kubelet_dir}/pods/{pod.metadata.uid}/volumes/kubernetes.io~configmap"
    mounted = Path(volume) / "kuberesolver-server" / "endpoints.json"
    until(mounted.exists, timeout_s=60, interval_s=0.5, message=f"kubelet's mount {mounted}")
    print(f"  client Pod {pod.metadata.name}: the webhook added the volume, kubelet mounted")
    print(f"  {mounted}")
    name = pod.metadata.name
    balanced(core, name, old)
    for server, count in sorted(spread(recent(core, name, 2)).items()):
        print(f"  {server:<32} {'#' * count} {count}")

    say("kubectl rollout restart deployment/server, under the client's calls")
    with MountWatch(mounted).running() as watch:
        started = time.time()
        run(admin, "kubectl rollout restart deployment/server")
        new = until(
            lambda: names(ready_pods(core, NS, "app=server"), 3, besides=old),
            timeout_s=POD_START_S * 3,
            interval_s=0.5,
            retry_on=TRANSIENT,
            message="three new Ready server Pods, the old ones gone",
        )
        rolled = time.time()
        print(f"  the rollout took {rolled - started:.1f} s: {', '.join(sorted(new))}")
        until(
            lambda: watch.changes[-1][1] == new,
            timeout_s=REFRESH_BOUND_S,
            interval_s=0.5,
            message="kubelet to refresh the mounted file",
        )
        refreshed = watch.changes[-1][0]
        balanced(core, name, new)
        settled = time.time()
    window = between(calls(core, NS, name), started, settled)
    failed = [c for c in window if not c.ok]
    fallback = [c for c in window if c.ok and c.pod not in watch.listed_at(c.t)]
    first_change = next(t for t, _ in watch.changes if t >= started)
    print(
        f"  kubelet changed the mounted file {first_change - started:.1f} s after the rollout "
        f"began, and listed exactly the new Pods {refreshed - started:.1f} s after it "
        f"({refreshed - rolled:.1f} s after the rollout ended)"
    )
    say("What the client saw")
    print(f"  calls during the rollout and the mount's lag: {len(window)}")
    print(f"  answered by a Pod the mounted file did not list (via the ClusterIP): {len(fallback)}")
    print(f"  failed calls: {len(failed)}")
    for call in failed[:5]:
        print(f"    {call}")
    if failed:
        say("Calls failed: the fallback did not carry them all")
        return 1
    say(
        f"Done in {time.monotonic() - t0:.0f} s: a real kubelet mount was refreshed "
        f"{refreshed - started:.0f} s after the rollout began; meanwhile the fallback carried "
        f"{len(fallback)} calls, and none failed"
    )
    return 0


def balanced(core: client.CoreV1Api, pod: str, servers: frozenset[str]) -> None:
    """Wait until the client's last two seconds of calls reached each of ``servers``, only;
    if they never do, show what they reached."""
    try:
        until(
            lambda: {c.pod for c in recent(core, pod, 2)} == servers,
            timeout_s=BALANCE_S,
            interval_s=1,
            retry_on=TRANSIENT,
            message=f"the client to balance over {sorted(servers)}",
        )
    except WaitTimeout:
        last = recent(core, pod, 2)
        failed = [c for c in last if not c.ok]
        print(f"  the client's last 2 s: {spread(last)}; {len(failed)} failed: {failed[:3]}")
        raise


def apply(user: UserShell, manifest: str) -> None:
    user.run(f"kubectl apply -f - <<'EOF'\n{manifest}EOF")


def recent(core: client.CoreV1Api, pod: str, seconds: float) -> list[Call]:
    """The client's calls of its last ``seconds`` of log."""
    log = calls(core, NS, pod)
    return between(log, log[-1].t - seconds, log[-1].t) if log else []


def spread(log: list[Call]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for call in log:
        if call.pod:
            counts[call.pod] = counts.get(call.pod, 0) + 1
    return counts


def names(pods: list[Any], count: int, besides: frozenset[str] = frozenset()) -> frozenset[str]:
    found = frozenset(p.metadata.name for p in pods)
    return found if len(found) == count and not found & besides else frozenset()


if __name__ == "__main__":
    sys.exit(main())
