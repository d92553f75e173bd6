"""A real rollout on a real node, once per delivery path: failed calls and ready-to-first-RPC.

One control plane and one node (kubelet, containerd, kube-proxy: testenv's
NodeCluster, in a private network namespace), the chart installed from the
locally built images (xDS on). Per path, in a namespace of its own: a
Deployment ``server`` of 5 Pods (gRPC readiness probe, maxSurge 1,
maxUnavailable 0; the test backend answers with its Pod's name), its Service
and GrpcTarget, and a client Deployment calling at 200 RPC/s, one JSON line
per call. Then ``kubectl rollout restart deployment/server``, and the bench
waits until the client balances over the 5 new Pods. Default settings
throughout: kubelet's 60 s sync, the clients' own windows.

Paths (``--paths=a,b``, default all):

- ``kubelet_mount``: the webhook mounts the ConfigMap (kubelet refreshes it),
  ClusterIP fallback on (the default);
- ``kubelet_mount_no_fallback``: the same, ``KUBERESOLVER_CLUSTER_IP_FALLBACK=0``;
- ``projector``: a headless Service, so the webhook injects the projector
  sidecar (the client's ServiceAccount may read the ConfigMap);
- ``direct``: direct mode (the client watches the API, under the Role of
  manifests/examples/direct-mode-rbac.yaml);
- ``operator_xds``: ``KUBERESOLVER_SOURCE=operator``, grpc's xDS client on the
  operator's ADS; the server is named by ``KUBERESOLVER_XDS_SERVER`` as the
  xDS Service's ClusterIP (the node has no cluster DNS, and the webhook's
  injected bootstrap names the Service by its DNS name);
- ``go_kuberesolver``: Go's sercand/kuberesolver v6 (bench/go/kuberesolver-client,
  from the Go module proxy) in its own image, under its own ServiceAccount
  that may only get, list and watch EndpointSlices.

Per path: ``failed_rpcs`` (from the restart to the client balanced over the
new Pods), ``calls`` and ``calls_per_s`` (what the client achieved of its 200);
``ready_to_first_rpc_ms_p50``/``_p99``: per new Pod, from
the bench's watch seeing it Ready to the first call the client logged that it
answered; ``calls_via_fallback``: the calls the library's balancer sent to the
Service's ClusterIP in that window (its pick metrics; 0 for Go, which has no
fallback; null where not measured); ``kubelet_refresh_s``: per ConfigMap update,
from the bench's watch seeing it to the client's container seeing a file of
that revision or later, the p50 (``_max`` too; for the projector path the
same measure is ``projector_refresh_s``); ``rollout_s``; ``settle_s`` (from
the rollout's end to the client balanced over the new Pods). A path that
fails reports ``{"error": "..."}``.
Last line: one JSON object with a key per path.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import urllib3
from _common import emit, percentile
from kubernetes import client, watch

from testenv.images import BuiltImage, ensure_images, import_into_containerd
from testenv.kube import admin_session, create_namespace
from testenv.kube_proxy import KubeProxy
from testenv.netns import enter_private_network
from testenv.node_cluster import NodeCluster
from testenv.node_config import SYNC_FREQUENCY_S
from testenv.node_journey import (
    OPERATOR_NAMESPACE,
    between,
    calls,
    client_env,
    endpoints,
    json_documents,
    ready_pods,
    server_yaml,
    wait_for_webhook,
)
from testenv.tools import UserShell
from testenv.wait import until

PATHS = (
    "kubelet_mount",
    "kubelet_mount_no_fallback",
    "projector",
    "direct",
    "operator_xds",
    "go_kuberesolver",
)
REPLICAS = 5
RATE = 200
PORT = 50051
POD_START_S = 180
REFRESH_BOUND_S = 3 * SYNC_FREQUENCY_S + 60
"""Longer than kubelet takes to refresh a mounted ConfigMap (its sync period plus jitter)."""
TRANSIENT = (client.ApiException, urllib3.exceptions.HTTPError, OSError, ValueError)
IMAGES = ("operator", "projector", "backend", "client", "go-kuberesolver")
SNAPSHOT_DIR = "/var/run/kuberesolver"


def helm_install(operator_tag: str, projector_tag: str) -> str:
    """The README's local install (images from the node's containerd), with xDS on."""
    return (
        "helm install kuberesolver charts/kuberesolver --namespace kuberesolver-system "
        "--create-namespace --set image.repository=localhost/kuberesolver-operator "
        f"--set image.tag={operator_tag} --set image.pullPolicy=Never "
        "--set projector.image.repository=localhost/kuberesolver-projector "
        f"--set projector.image.tag={projector_tag} --set projector.image.pullPolicy=Never "
        "--set xds.enabled=true --wait --timeout=300s"
    )


def role(name: str, sa: str, rules: list[dict[str, Any]]) -> str:
    """A ServiceAccount, a Role with ``rules`` and the binding between them (JSON is YAML)."""
    docs = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": sa}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": name},
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": sa}],
        },
    ]
    return "\n---\n".join(json.dumps(d) for d in docs) + "\n"


DIRECT_RULES = [
    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
     "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["services"], "verbs": ["get"]},
]  # fmt: skip
"""manifests/examples/direct-mode-rbac.yaml's Role."""
GO_RULES = [
    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
     "verbs": ["get", "list", "watch"]},
]  # fmt: skip
"""What Go's kuberesolver v6 reads: it lists and watches the Service's EndpointSlices."""
PROJECTOR_RULES = [
    {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["server"],
     "verbs": ["get", "list", "watch"]},
]  # fmt: skip
"""manifests/examples/projector-rbac.yaml's Role: the sidecar reads the one ConfigMap."""


def client_yaml(path: str, namespace: str, images: dict[str, BuiltImage], xds: str) -> str:
    """The client Deployment of ``path``: labels, annotations, ServiceAccount and environment."""
    target = f"kubernetes:///server.{namespace}:grpc"
    watched = f"{SNAPSHOT_DIR}/server.{namespace}"
    labels = "{app: client}"
    annotations = ""
    account = ""
    image = images["client"].ref
    args = ""
    if path in ("kubelet_mount", "kubelet_mount_no_fallback", "projector"):
        labels = '{app: client, kuberesolver.io/inject: "true"}'
        annotations = "\n      annotations: {kuberesolver.io/targets: server}"
        more = {"PICKS_EVERY_S": "1", "WATCH_SNAPSHOT": watched}
        if path == "kubelet_mount_no_fallback":
            more["KUBERESOLVER_CLUSTER_IP_FALLBACK"] = "0"
        if path == "projector":
            account = "\n      serviceAccountName: client"
        env = client_env(target, RATE, **more)
    elif path == "direct":
        account = "\n      serviceAccountName: client"
        env = client_env(target, RATE, DIRECT="1", PICKS_EVERY_S="1")
    elif path == "operator_xds":
        env = client_env(target, RATE, KUBERESOLVER_SOURCE="operator", KUBERESOLVER_XDS_SERVER=xds)
    else:
        account = "\n      serviceAccountName: client"
        image = images["go-kuberesolver"].ref
        env = "[]"
        args = f'\n          args: ["-target={target}", "-rate={RATE}", "-timeout=5s", "-log"]'
    return f"""\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: client}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: client}}}}
  template:
    metadata:
      labels: {labels}{annotations}
    spec:{account}
      terminationGracePeriodSeconds: 2
      containers:
        - name: client
          image: {image}
          imagePullPolicy: Never{args}
          env: {env}
"""


class Watched:
    """When the bench first saw each server Pod Ready, and each revision of ConfigMap ``server``."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.core = client.CoreV1Api(api)
        self.namespace = namespace
        self.ready_at: dict[str, float] = {}
        self.revisions: list[tuple[int, float]] = []
        self.stopping = threading.Event()
        self.threads = [
            threading.Thread(target=self._loop, args=(self._pods,), daemon=True),
            threading.Thread(target=self._loop, args=(self._config_map,), daemon=True),
        ]
        for t in self.threads:
            t.start()

    def stop(self) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join(timeout=10)

    def _loop(self, step: Callable[[], None]) -> None:
        while not self.stopping.is_set():
            with contextlib.suppress(*TRANSIENT):
                step()

    def _stream(self, fn: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
        w = watch.Watch()
        for event in w.stream(fn, self.namespace, timeout_seconds=2, **kwargs):
            yield event["object"]
            if self.stopping.is_set():
                w.stop()

    def _pods(self) -> None:
        for pod in self._stream(self.core.list_namespaced_pod, label_selector="app=server"):
            conditions = pod.status.conditions or []
            if any(c.type == "Ready" and c.status == "True" for c in conditions):
                self.ready_at.setdefault(pod.metadata.name, time.time())

    def _config_map(self) -> None:
        for cm in self._stream(
            self.core.list_namespaced_config_map, field_selector="metadata.name=server"
        ):
            text = (cm.data or {}).get("endpoints.json")
            if text:
                revision = int(json.loads(text)["revision"])
                if not self.revisions or self.revisions[-1][0] != revision:
                    self.revisions.append((revision, time.time()))


def log_lines(core: client.CoreV1Api, namespace: str, pod: str, key: str) -> list[dict[str, Any]]:
    """The client's report lines that start with ``key`` (``picks``, ``snapshot``)."""
    response = core.read_namespaced_pod_log(pod, namespace, _preload_content=False)
    return [doc for doc in json_documents(response.data.decode(errors="replace")) if key in doc]


def names_if(pods: list[client.V1Pod], count: int, besides: set[str]) -> set[str]:
    names = {p.metadata.name for p in pods}
    return names if len(names) == count and not names & besides else set()


def balanced_over(
    core: client.CoreV1Api, namespace: str, pod: str, servers: set[str], timeout_s: float
) -> None:
    """Wait until the client's last two seconds of calls reached each of ``servers``, only."""

    def balanced() -> bool:
        log = calls(core, namespace, pod, since_seconds=4)
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


def refresh_lags(revisions: list[tuple[int, float]], seen: list[dict[str, Any]]) -> list[float]:
    """Per ConfigMap revision (and when it was seen), seconds until the container's file held it
    or a later one; revisions never seen in the file before the last are skipped."""
    lags = []
    for revision, at in revisions:
        later = [s["t"] for s in seen if isinstance(s["snapshot"], int)
                 and s["snapshot"] >= revision and s["t"] >= at - 1]  # fmt: skip
        if later:
            lags.append(max(0.0, min(later) - at))
    return lags


def fallback_calls(
    picks: list[dict[str, Any]], cluster_ip: str, start: float, end: float
) -> int | None:
    """Calls sent to the ClusterIP between ``start`` and ``end``, from the pick reports
    (None without a report after ``end``)."""
    endpoint = f"{cluster_ip}:{PORT}"
    if not any(p["t"] >= end for p in picks):
        return None
    before = [p["picks"].get(endpoint, 0) for p in picks if p["t"] <= start]
    values = [before[-1] if before else 0]
    last = min(p["t"] for p in picks if p["t"] >= end)
    values += [p["picks"].get(endpoint, 0) for p in picks if start < p["t"] <= last]
    # A counter starts anew when its connection closed and opened again: count the rises.
    return sum(b - a if b >= a else b for a, b in itertools.pairwise(values))


class Bench:
    """The node, the installed chart, and one run per path."""

    def __init__(self, api: client.ApiClient, user: UserShell, images: dict[str, BuiltImage]):
        self.api = api
        self.core = client.CoreV1Api(api)
        self.user = user
        self.images = images

    def xds_server(self) -> str:
        service = self.core.read_namespaced_service("kuberesolver-xds", OPERATOR_NAMESPACE)
        return f"{service.spec.cluster_ip}:18000"

    def kubectl_apply(self, namespace: str, manifest: str) -> None:
        self.user.run(f"kubectl apply -n {namespace} -f - <<'EOF'\n{manifest}EOF")

    def run(self, path: str) -> dict[str, Any]:
        namespace = create_namespace(self.api, "p-" + path.replace("_", "-"))
        try:
            return self._run(path, namespace)
        finally:
            self.core.delete_namespace(namespace, propagation_policy="Background")
            until(
                lambda: not self.core.list_namespaced_pod(namespace).items,
                timeout_s=180,
                interval_s=1,
                retry_on=TRANSIENT,
                message=f"the Pods of {namespace} gone",
            )

    def _run(self, path: str, ns: str) -> dict[str, Any]:
        core = self.core
        rules = {"direct": DIRECT_RULES, "go_kuberesolver": GO_RULES,
                 "projector": PROJECTOR_RULES}.get(path)  # fmt: skip
        if rules:
            self.kubectl_apply(ns, role("client", "client", rules))
        self.kubectl_apply(
            ns, server_yaml(self.images["backend"].ref, REPLICAS, headless=path == "projector")
        )
        servers = until(
            lambda: names_if(ready_pods(core, ns, "app=server"), REPLICAS, set()),
            timeout_s=POD_START_S * 2,
            interval_s=1,
            retry_on=TRANSIENT,
            message=f"{REPLICAS} Ready server Pods",
        )
        until(
            lambda: len(endpoints(self.api, ns)) == REPLICAS,
            timeout_s=60,
            interval_s=0.5,
            retry_on=TRANSIENT,
            message="the server Pods published",
        )
        service = core.read_namespaced_service("server", ns)
        cluster_ip = service.spec.cluster_ip
        self.kubectl_apply(ns, client_yaml(path, ns, self.images, self.xds_server()))
        (client_pod,) = until(
            lambda: ready_pods(core, ns, "app=client"),
            timeout_s=POD_START_S,
            interval_s=1,
            retry_on=TRANSIENT,
            message="the client Pod running",
        )
        pod = client_pod.metadata.name
        balanced_over(core, ns, pod, servers, timeout_s=120)

        watched = Watched(self.api, ns)
        until(lambda: watched.revisions or path in ("direct", "go_kuberesolver"),
              timeout_s=30, message="the watch of ConfigMap server")  # fmt: skip
        started = time.time()
        self.user.run(f"kubectl rollout restart deployment/server -n {ns}")
        new = until(
            lambda: (
                names_if(
                    core.list_namespaced_pod(ns, label_selector="app=server").items,
                    REPLICAS,
                    servers,
                )
                and names_if(ready_pods(core, ns, "app=server"), REPLICAS, servers)
            ),
            timeout_s=POD_START_S * REPLICAS,
            interval_s=0.5,
            retry_on=TRANSIENT,
            message=f"{REPLICAS} new Ready server Pods, the old ones gone",
        )
        rolled = time.time()
        error = None
        try:
            balanced_over(core, ns, pod, new, timeout_s=REFRESH_BOUND_S)
        except Exception as exc:  # the no-fallback path may never get there: say so
            error = f"the client never balanced over the new Pods: {exc}"
        settled = time.time()
        # The pick reports come a second apart: wait for the one that covers ``settled``.
        until(
            lambda: any(c.t >= settled + 1.5 for c in calls(core, ns, pod, since_seconds=3)),
            timeout_s=30,
            interval_s=0.5,
            retry_on=TRANSIENT,
            message="the client's log past the window",
        )
        watched.stop()

        log = calls(core, ns, pod)
        window = between(log, started, settled)
        first: dict[str, float] = {}
        for c in log:
            if c.ok and c.pod in new and c.pod not in first:
                first[c.pod] = c.t
        delays = [
            (first[name] - watched.ready_at[name]) * 1000
            for name in sorted(new)
            if name in first and name in watched.ready_at
        ]
        result: dict[str, Any] = {
            "failed_rpcs": sum(not c.ok for c in window),
            "calls": len(window),
            "calls_per_s": round(len(window) / max(settled - started, 1e-9), 1),
            "ready_to_first_rpc_ms_p50": round(percentile(delays, 50), 1) if delays else None,
            "ready_to_first_rpc_ms_p99": round(percentile(delays, 99), 1) if delays else None,
            "ready_to_first_rpc_pods": len(delays),
            "rollout_s": round(rolled - started, 1),
            "settle_s": round(settled - rolled, 1),
        }
        if error:
            result["error"] = error
        failures = sorted({c.error or "" for c in window if not c.ok})
        if failures:
            result["failure_kinds"] = failures[:3]
        picks = log_lines(core, ns, pod, "picks")
        if path == "go_kuberesolver":
            result["calls_via_fallback"] = 0  # Go's kuberesolver has no fallback
        elif picks and cluster_ip and cluster_ip != "None":
            result["calls_via_fallback"] = fallback_calls(picks, cluster_ip, started, settled)
        elif path == "projector":
            result["calls_via_fallback"] = 0  # a headless Service: no ClusterIP to fall back on
        else:
            result["calls_via_fallback"] = None  # not measured on this path
        seen = log_lines(core, ns, pod, "snapshot")
        lags = refresh_lags([r for r in watched.revisions if r[1] >= started], seen)
        key = "projector_refresh_s" if path == "projector" else "kubelet_refresh_s"
        if seen and lags:
            result[key] = round(percentile(lags, 50), 1)
            result[f"{key}_max"] = round(max(lags), 1)
            result["config_map_updates"] = len(lags)
        if path != "projector":
            result.setdefault("kubelet_refresh_s", None)  # no file on this path
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--paths", default=",".join(PATHS), help=", ".join(PATHS))
    args = parser.parse_args()
    paths = [p for p in args.paths.split(",") if p]
    unknown = sorted(set(paths) - set(PATHS))
    if unknown:
        parser.error(f"no path {', '.join(unknown)} (there are {', '.join(PATHS)})")
    enter_private_network()
    images = ensure_images(IMAGES)
    results: dict[str, Any] = {}
    with NodeCluster() as nodes:
        (node,) = nodes.scale(1)
        import_into_containerd(images.values(), str(node.layout.containerd_socket))
        with KubeProxy(nodes.control_plane, node=node.name, address=None):
            user = UserShell(nodes.control_plane.admin_kubeconfig)
            user.run(helm_install(images["operator"].tag, images["projector"].tag), timeout_s=400)
            for api in admin_session(nodes.control_plane.admin_kubeconfig):
                wait_for_webhook(api)
                bench = Bench(api, user, images)
                for path in paths:
                    print(f"== {path}", file=sys.stderr, flush=True)
                    try:
                        results[path] = bench.run(path)
                    except Exception as exc:
                        traceback.print_exc()
                        results[path] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
                    print(json.dumps({path: results[path]}), file=sys.stderr, flush=True)
    left = nodes.leftovers()
    if left:
        print(f"the stopped node left these behind: {left}", file=sys.stderr)
    emit(results)


if __name__ == "__main__":
    main()
