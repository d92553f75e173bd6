"""A Deployment-style rolling update under steady gRPC load, measured (shared by test and bench).

One namespace holds a Service "greeter" (a ClusterIP one, or ``headless``),
its GrpcTarget, and five Pods whose gRPC servers run on their pod IPs. The
client reads the snapshot that the projector writes (optionally ``lag_s``
late, like kubelet) and calls at a steady rate with a deadline and without
``wait_for_ready``.

With ``via_webhook`` the delivery path is the mounts webhook's choice: a
client Pod labelled for injection is created through the apiserver (the
operator must serve the webhook, registered with it; nothing runs the Pod),
and the harness does what its admitted spec says: the injected projector
sidecar's own arguments, without lag, or for a plain ConfigMap volume the
projector ``lag_s`` late, as kubelet. The rollout
replaces the Pods one by one as a Deployment with maxSurge 1 and
maxUnavailable 0 does:

1. a new Pod becomes Ready;
2. an old Pod turns terminating (deleted with a grace period);
3. once its EndpointSlice says so, and after ``pre_stop_s`` (a preStop hook),
   the old server drains and stops (:class:`kuberesolver.server.DrainableServer`:
   a GOAWAY while it still serves sends clients elsewhere, even those whose
   endpoint list is stale; then in-flight calls finish);
4. the old Pod is deleted.

Clients compared (``client=``):

- ``"kuberesolver"``: a kuberesolver channel on the projected directory (with
  or without the ClusterIP fallback);
- ``"static_list"``: the addresses resolved once at start (``ipv4:`` with
  round_robin), as ``dns:///`` to a headless Service until a connection drops;
- ``"new_channel"``: a new ``ipv4:`` round_robin channel per snapshot update,
  the old one closed 1 s later.

Needs the control plane, a running operator, kube-proxy and the private
network namespace (see tests/conftest.py, or ``bench/rolling_update.py``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import grpc
from kubernetes import client

from kuberesolver.server import DrainableServer
from testenv.controlplane import ControlPlane
from testenv.kube import apply_object, documents, service_account_token
from testenv.kube_proxy import NODE_NAME
from testenv.netns import pod_ip
from testenv.wait import until
from testenv.workloads import create_pod, create_service, slice_addresses

__all__ = ["METHOD", "RolloutResult", "run_rollout"]

ROOT = Path(__file__).resolve().parent.parent
METHOD = "/rollout.Greeter/SayHello"
PORT = 50051
SERVICE = "greeter"
Client = Literal["kuberesolver", "static_list", "new_channel"]


class PodServer:
    """A gRPC server on a pod IP that drains before it stops (kuberesolver.server)."""

    def __init__(self, name: str, ip: str) -> None:
        self.name = name
        self.ip = ip
        self.first_call_at: float | None = None
        self.calls = 0
        self.peers: set[str] = set()
        self._lock = threading.Lock()
        self._server = DrainableServer(futures.ThreadPoolExecutor(max_workers=8))
        handler = grpc.method_handlers_generic_handler(
            "rollout.Greeter", {"SayHello": grpc.unary_unary_rpc_method_handler(self._hello)}
        )
        self._server.add_generic_rpc_handlers((handler,))
        self._server.add_insecure_port(f"{ip}:{PORT}")
        self._server.start()

    def _hello(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        with self._lock:
            if self.first_call_at is None:
                self.first_call_at = time.monotonic()
            self.calls += 1
            self.peers.add(context.peer())
        return self.name.encode()

    def connections(self) -> int:
        with self._lock:
            return len(self.peers)

    def drain_and_stop(self, drain_timeout_s: float = 10.0, grace_s: float = 5.0) -> bool:
        """What the pod does on SIGTERM: clients leave first, then in-flight calls finish."""
        return self._server.drain_and_stop(drain_timeout_s, grace_s)

    def stop(self) -> None:
        """Stop at once (the end of a run)."""
        self._server.stop(None).wait()


@dataclass
class RolloutResult:
    """What one setting measured."""

    rpcs: int = 0
    failed_rpcs: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    duration_s: float = 0.0
    ready_to_first_rpc_ms: dict[str, float | None] = field(default_factory=dict)
    """Per new Pod: from Ready to its first answered call (None: it never got one)."""
    reconnects: int = 0
    """Connections the servers accepted beyond one per Pod that got traffic."""
    rollout_s: float = 0.0
    server_stops: int = 0
    undrained_stops: int = 0
    """Old servers that still had connections when their drain timed out."""
    delivery: str = ""
    """How the snapshot reached the client: the projector, or a plain mount (lagged)."""

    @property
    def rps(self) -> float:
        return self.rpcs / self.duration_s if self.duration_s else 0.0

    def ready_percentile(self, p: float) -> float | None:
        """The p-th percentile of ready-to-first-RPC; None if a Pod never got traffic."""
        values = sorted(
            self.ready_to_first_rpc_ms.values(), key=lambda v: math.inf if v is None else v
        )
        if not values:
            return None
        value = values[min(len(values) - 1, max(0, math.ceil(p / 100 * len(values)) - 1))]
        return None if value is None else round(value, 1)

    def summary(self) -> dict[str, Any]:
        """The benchmark's keys for this setting."""
        return {
            "failed_rpcs": self.failed_rpcs,
            "rps": round(self.rps, 1),
            "ready_to_first_rpc_ms_p50": self.ready_percentile(50),
            "ready_to_first_rpc_ms_p99": self.ready_percentile(99),
            "reconnects": self.reconnects,
            "failures_by_code": dict(sorted(self.failures.items())),
            "undrained_stops": self.undrained_stops,
            "delivery": self.delivery,
        }


class Load:
    """``threads`` threads calling at ``rate_per_s`` in all, paced, whatever the outcome."""

    def __init__(
        self,
        call: Callable[[], Callable[..., bytes]],
        rate_per_s: float = 250.0,
        threads: int = 5,
        deadline_s: float = 1.0,
    ) -> None:
        self._call = call
        self._period_s = threads / rate_per_s
        self._deadline_s = deadline_s
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.ok = 0
        self.failures: dict[str, int] = {}
        self.started_at = 0.0
        self.stopped_at = 0.0
        self._threads = [
            threading.Thread(target=self._run, name=f"load-{i}", daemon=True)
            for i in range(threads)
        ]

    def start(self) -> Load:
        self.started_at = time.monotonic()
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(10)
        self.stopped_at = time.monotonic()

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            try:
                self._call()(b"", timeout=self._deadline_s)
            except grpc.RpcError as exc:
                code = exc.code().name if hasattr(exc, "code") else type(exc).__name__
                with self._lock:
                    self.failures[code] = self.failures.get(code, 0) + 1
            else:
                with self._lock:
                    self.ok += 1
            next_at = max(next_at + self._period_s, time.monotonic() - self._period_s)
            self._stop.wait(max(0.0, next_at - time.monotonic()))


class Projector:
    """The projector as the client's ServiceAccount (get/watch on ConfigMap "greeter")."""

    def __init__(
        self,
        kubeconfig: Path,
        namespace: str,
        root: Path,
        lag_s: float,
        injected: list[str] | None = None,
    ) -> None:
        """``injected``: an injected sidecar's arguments, run as they are but for ``--dir``,
        moved under ``root`` (the same last component: the client's directory name)."""
        self.directory = root / f"{SERVICE}.{namespace}"
        args = [f"--namespace={namespace}", f"--configmap={SERVICE}", f"--dir={self.directory}"]
        if injected:
            args = [a for a in injected if not a.startswith("--dir=")]
            (where,) = [a.removeprefix("--dir=") for a in injected if a.startswith("--dir=")]
            self.directory = root / Path(where).name
            args.append(f"--dir={self.directory}")
        self.log_path = root.parent / f"projector-{namespace}.log"
        with open(self.log_path, "wb") as out:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "kuberesolver.projector", *args, f"--lag-s={lag_s}"],
                env={**os.environ, "KUBECONFIG": str(kubeconfig)},
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def snapshot(self) -> dict[str, Any] | None:
        try:
            doc: dict[str, Any] = json.loads((self.directory / "endpoints.json").read_bytes())
        except (OSError, ValueError):
            return None
        return doc

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)


def _ready_ips(doc: dict[str, Any] | None) -> set[str]:
    if doc is None:
        return set()
    return {
        e["address"]
        for e in doc.get("endpoints", [])
        if e.get("ready") and not e.get("terminating")
    }


def _ipv4_channel(addresses: list[str]) -> grpc.Channel:
    config = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})
    return grpc.insecure_channel(
        "ipv4:" + ",".join(f"{a}:{PORT}" for a in sorted(addresses)),
        options=[("grpc.service_config", config), ("grpc.use_local_subchannel_pool", 1)],
    )


class _ChannelPerUpdate:
    """The naive baseline: watch the snapshot file; a new channel on every change."""

    def __init__(self, projector: Projector) -> None:
        self._projector = projector
        self._current = _ipv4_channel(sorted(_ready_ips(projector.snapshot())))
        self._seen = _ready_ips(projector.snapshot())
        self._stop = threading.Event()
        self._closing: list[threading.Timer] = []
        self._thread = threading.Thread(target=self._watch, name="channel-per-update", daemon=True)
        self._thread.start()

    def call(self) -> Callable[..., bytes]:
        multicallable: Callable[..., bytes] = self._current.unary_unary(METHOD)
        return multicallable

    def _watch(self) -> None:
        while not self._stop.wait(0.02):
            ips = _ready_ips(self._projector.snapshot())
            if ips and ips != self._seen:
                self._seen = ips
                old, self._current = self._current, _ipv4_channel(sorted(ips))
                timer = threading.Timer(1.0, old.close)
                timer.start()
                self._closing.append(timer)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for timer in self._closing:
            timer.join(5)
        self._current.close()


class _World:
    """The namespace's Service, GrpcTarget, client RBAC and Pods with their servers."""

    def __init__(
        self, api: client.ApiClient, namespace: str, first_ip: int, headless: bool = False
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.core = client.CoreV1Api(api)
        self._next_ip = first_ip
        self._next_pod = 1
        self.servers: dict[str, PodServer] = {}
        create_service(api, namespace, SERVICE, headless=headless)
        for doc in documents(ROOT / "manifests/examples/projector-rbac.yaml"):
            apply_object(api, _moved(doc, namespace))

    def publish(self, ips: set[str]) -> None:
        """Create the GrpcTarget once the slices list ``ips`` ready: its first version is whole."""
        until(
            lambda: self._ready_in_slices() == ips,
            timeout_s=30,
            message="every Pod ready in the EndpointSlices",
        )
        for doc in documents(ROOT / "manifests/examples/greeter.yaml"):
            if doc["kind"] == "GrpcTarget":
                apply_object(self.api, _moved(doc, self.namespace))

    def add_pod(self) -> tuple[str, float]:
        """Start a server, create its Pod and report it Ready; returns (name, Ready time)."""
        name, ip = f"{SERVICE}-{self._next_pod}", pod_ip(self._next_ip)
        self._next_pod += 1
        self._next_ip += 1
        self.servers[name] = PodServer(name, ip)
        create_pod(self.api, self.namespace, name, ip, NODE_NAME, {"app": SERVICE})
        return name, time.monotonic()

    def retire(self, name: str, pre_stop_s: float) -> bool:
        """Steps 2-4 for one old Pod: terminating, its server drains and stops, deleted.

        Returns whether the drain ended with no connection left.
        """
        ip = self.servers[name].ip
        self.core.delete_namespaced_pod(name, self.namespace, grace_period_seconds=30)
        until(
            message=f"{name} terminating in its EndpointSlice",
            fn=lambda: not slice_addresses(self.api, self.namespace, SERVICE).get(ip, False),
            timeout_s=30,
        )
        time.sleep(pre_stop_s)  # the preStop hook every zero-downtime Deployment has
        drained = self.servers[name].drain_and_stop()  # SIGTERM
        self.core.delete_namespaced_pod(name, self.namespace, grace_period_seconds=0)
        return drained

    def _ready_in_slices(self) -> set[str]:
        addresses = slice_addresses(self.api, self.namespace, SERVICE)
        return {ip for ip, ready in addresses.items() if ready}

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()


def _moved(doc: dict[str, Any], namespace: str) -> dict[str, Any]:
    doc = {**doc, "metadata": {**doc["metadata"], "namespace": namespace}}
    if "subjects" in doc:
        doc["subjects"] = [{**s, "namespace": namespace} for s in doc["subjects"]]
    return doc


@contextlib.contextmanager
def _client(
    kind: Client, projector: Projector, namespace: str, fallback: bool
) -> Iterator[Callable[[], Callable[..., bytes]]]:
    if kind == "kuberesolver":
        import kuberesolver

        channel = kuberesolver.insecure_channel(
            f"kubernetes:///{SERVICE}.{namespace}:grpc",
            snapshot_dir=projector.directory.parent,
            cluster_ip_fallback=fallback,
        )
        call = channel.unary_unary(METHOD)
        try:
            yield lambda: call
        finally:
            channel.close()
    elif kind == "static_list":
        channel = _ipv4_channel(sorted(_ready_ips(projector.snapshot())))
        call = channel.unary_unary(METHOD)
        try:
            yield lambda: call
        finally:
            channel.close()
    else:
        swapper = _ChannelPerUpdate(projector)
        try:
            yield swapper.call
        finally:
            swapper.close()


def run_rollout(
    control_plane: ControlPlane,
    api: client.ApiClient,
    namespace: str,
    workdir: Path,
    *,
    client_kind: Client = "kuberesolver",
    lag_s: float = 0.0,
    fallback: bool = True,
    headless: bool = False,
    via_webhook: bool = False,
    replicas: int = 5,
    first_ip: int = 1000,
    rate_per_s: float = 250.0,
    deadline_s: float = 1.0,
    pre_stop_s: float = 1.0,
    settle_timeout_s: float = 30.0,
    log: Callable[[str], None] = lambda _: None,
) -> RolloutResult:
    """Set up one namespace, roll all ``replicas`` Pods under load, and measure."""
    world = _World(api, namespace, first_ip, headless=headless)
    token = service_account_token(api, namespace, "greeter-client")
    kubeconfig = control_plane.token_kubeconfig(f"client-{namespace}", token, namespace)
    root = workdir / f"mount-{namespace}"
    projector: Projector | None = None
    delivery = "plain mount" if lag_s else "projector"
    if not via_webhook:
        projector = Projector(kubeconfig, namespace, root, lag_s)
    try:
        old = [world.add_pod()[0] for _ in range(replicas)]
        old_ips = {world.servers[n].ip for n in old}
        world.publish(old_ips)
        if projector is None:
            args = injected_projector(api, namespace)
            delivery = "projector sidecar (webhook)" if args else "plain mount (webhook)"
            projector = Projector(kubeconfig, namespace, root, 0.0 if args else lag_s, args)
            log(f"{namespace}: the webhook chose the {delivery}: {args}")
        until(
            message="the first snapshot with every Pod",
            fn=lambda: _ready_ips(projector.snapshot()) == old_ips,
            timeout_s=lag_s + 60,
        )
        with _client(client_kind, projector, namespace, fallback) as call:
            until(
                message="every old Pod to get traffic",
                fn=lambda: _warm(call, world, old),
                timeout_s=30,
            )
            baseline = {n: world.servers[n].connections() for n in old}
            load = Load(call, rate_per_s=rate_per_s, deadline_s=deadline_s).start()
            try:
                rollout_start = time.monotonic()
                ready_at: dict[str, float] = {}
                undrained = 0
                for name in old:
                    new, at = world.add_pod()
                    ready_at[new] = at
                    log(f"{namespace}: {new} Ready; retiring {name}")
                    undrained += not world.retire(name, pre_stop_s)
                rollout_s = time.monotonic() - rollout_start
                new_ips = {world.servers[n].ip for n in ready_at}
                # Until the client reaches every new Pod, at most lag + settle_timeout_s
                # (a static list never does: its failures are counted over that bound).
                with contextlib.suppress(TimeoutError):
                    until(
                        message="the client to reach every new Pod",
                        fn=lambda: (
                            _ready_ips(projector.snapshot()) == new_ips
                            and all(world.servers[n].first_call_at for n in ready_at)
                        ),
                        timeout_s=lag_s + settle_timeout_s,
                    )
                # a short steady window on the final state, the same for every client
                time.sleep(1.0)
            finally:
                load.stop()
        result = RolloutResult(
            rpcs=load.ok + sum(load.failures.values()),
            failed_rpcs=sum(load.failures.values()),
            failures=dict(load.failures),
            duration_s=load.stopped_at - load.started_at,
            rollout_s=rollout_s,
            server_stops=len(ready_at),
            undrained_stops=undrained,
            delivery=delivery,
        )
        for name, at in ready_at.items():
            first = world.servers[name].first_call_at
            result.ready_to_first_rpc_ms[name] = None if first is None else (first - at) * 1000
        # Every new Pod that got traffic needs one connection; anything more is a reconnect.
        opened = sum(s.connections() - baseline.get(n, 0) for n, s in world.servers.items())
        needed = sum(1 for n in ready_at if world.servers[n].calls)
        result.reconnects = opened - needed
        return result
    finally:
        if projector is not None:
            projector.stop()
        world.stop()


def injected_projector(api: client.ApiClient, namespace: str) -> list[str]:
    """Create a client Pod that names the GrpcTarget, as the webhook admits it (retried
    until the webhook has answered); the injected projector sidecar's arguments, or
    ``[]`` when it got the plain ConfigMap volume."""
    core = client.CoreV1Api(api)
    body: Any = {
        "metadata": {
            "name": "client",
            "labels": {"kuberesolver.io/inject": "true"},
            "annotations": {"kuberesolver.io/targets": SERVICE},
        },
        "spec": {
            "serviceAccountName": "greeter-client",
            "automountServiceAccountToken": False,
            "containers": [{"name": "client", "image": "example.invalid/client:1"}],
        },
    }

    def gone() -> bool:
        try:
            core.read_namespaced_pod("client", namespace)
        except client.ApiException as exc:
            if exc.status == 404:
                return True
            raise
        return False

    def admitted() -> dict[str, Any] | None:
        with contextlib.suppress(client.ApiException):
            core.delete_namespaced_pod("client", namespace, grace_period_seconds=0)
        until(gone, timeout_s=30, message="the client Pod gone")
        pod: dict[str, Any] = api.sanitize_for_serialization(  # type: ignore[no-untyped-call]
            core.create_namespaced_pod(namespace, body)
        )
        mounted = any(v["name"].startswith("kuberesolver-") for v in pod["spec"]["volumes"])
        return pod if mounted else None

    pod = until(admitted, timeout_s=60, message="the webhook to mutate the Pod")
    assert pod is not None
    for container in pod["spec"].get("initContainers") or []:
        command = container.get("command") or []
        if container.get("restartPolicy") == "Always" and command[:1] == ["kuberesolver-projector"]:
            return [str(a) for a in command[1:]]
    return []


def _warm(call: Callable[[], Callable[..., bytes]], world: _World, names: list[str]) -> bool:
    with contextlib.suppress(grpc.RpcError):
        for _ in range(4 * len(names)):
            call()(b"", timeout=2)
    return all(world.servers[n].calls for n in names)
