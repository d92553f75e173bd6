"""Admission latency of ordinary Pods while hostile Pods arrive, through the real apiserver.

The operator serves the mounts webhook (the shipped static configuration,
``failurePolicy: Ignore``, 5 s timeout, pointed at https://127.0.0.1:PORT) on
the real control plane. Two phases of ``--phase-s`` each:

1. ``idle``: ordinary Pods only;
2. ``hostile``: the same, while hostile Pods arrive at ``--hostile-rate`` per
   second from another thread: one annotation of 36,000 names (~250 KB), 32
   unknown names, ``otherns/secret``, ``../../otherns/grpctargets/secret``,
   ``greeter%2Fstatus``, in turn (each deleted once admitted).

In each phase, one after another in turn (so that all see the same moments of
a busy machine): an ordinary Pod (labelled, annotated with one GrpcTarget
that exists: the create call's latency, and whether it got its mount), the
same Pod without the label (the webhook never sees it: the apiserver's own
floor), and an AdmissionReview posted straight to the webhook (its answer
time, which is what the apiserver's call to it costs).

The last line is one JSON object: p50/p99/max (ms) of each, per phase, mounts
missing, hostile Pods created and refused (a 4xx or 5xx, which must be 0).
"""

from __future__ import annotations

import base64
import copy
import json
import ssl
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from _common import emit, options, percentile  # type: ignore[import-not-found]
from kubernetes import client

from testenv import ControlPlane, ensure_binaries, free_port
from testenv.kube import (
    api_client,
    apply,
    apply_object,
    create_namespace,
    documents,
    service_account_token,
)
from testenv.netns import enter_private_network
from testenv.operator_process import OperatorProcess
from testenv.wait import until

ROOT = Path(__file__).resolve().parent.parent
NS = "bench-admission"
HOSTILE = [
    ",".join(f"n{i}" for i in range(36_000)),
    ",".join(f"unknown-{i}" for i in range(32)),
    "otherns/secret",
    "../../otherns/grpctargets/secret",
    "greeter%2Fstatus",
]


def pod(name: str, labelled: bool, targets: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {"kuberesolver.io/inject": "true"} if labelled else {},
            "annotations": {"kuberesolver.io/targets": targets},
        },
        "spec": {
            "automountServiceAccountToken": False,
            "containers": [{"name": "app", "image": "example.invalid/app:1"}],
        },
    }


def register(admin: client.ApiClient, ca_pem: bytes, port: int) -> None:
    config = next(
        d for d in documents(ROOT / "manifests/webhook.yaml")
        if d["kind"] == "MutatingWebhookConfiguration"
    )  # fmt: skip
    config = copy.deepcopy(config)
    bundle = base64.b64encode(ca_pem).decode()
    for hook in config["webhooks"]:
        path = hook["clientConfig"]["service"]["path"]
        hook["clientConfig"] = {"url": f"https://127.0.0.1:{port}{path}", "caBundle": bundle}
    apply_object(admin, config)


class Hostile(threading.Thread):
    """Hostile Pods at ``rate`` per second, each deleted once admitted."""

    def __init__(self, admin: client.ApiClient, rate: float) -> None:
        super().__init__(daemon=True)
        self.core = client.CoreV1Api(admin)
        self.rate = rate
        self.created = 0
        self.refused: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        start = time.monotonic()
        n = 0
        while not self.stop.is_set():
            name = f"hostile-{n}"
            try:
                self.core.create_namespaced_pod(NS, pod(name, True, HOSTILE[n % len(HOSTILE)]))
                self.created += 1
                self.core.delete_namespaced_pod(name, NS, grace_period_seconds=0)
            except client.ApiException as exc:
                self.refused.append(f"{exc.status} {exc.reason}")
            n += 1
            pause = start + n / self.rate - time.monotonic()  # pacing, not a wait
            if pause > 0:
                self.stop.wait(pause)


class Direct:
    """AdmissionReviews posted straight to the webhook (TLS, the test CA), as the apiserver does."""

    def __init__(self, port: int, ca: Path) -> None:
        self.context = ssl.create_default_context(cafile=str(ca))
        self.url = f"https://127.0.0.1:{port}/mounts.kuberesolver.io"
        self.body = pod("direct", True, "greeter")
        self.body["metadata"]["namespace"] = NS
        self.failed = 0
        """Reviews not answered in 10 s, or answered without the mount."""

    def review_ms(self) -> float:
        review = {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": str(uuid.uuid4()),
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": NS,
                "operation": "CREATE",
                "userInfo": {"username": "bench"},
                "object": self.body,
            },
        }
        request = urllib.request.Request(
            self.url, json.dumps(review).encode(), {"Content-Type": "application/json"}
        )
        start = time.perf_counter()
        try:
            with urllib.request.urlopen(request, timeout=10, context=self.context) as r:
                answer = json.loads(r.read())
        except OSError:  # no answer within 10 s (the old webhook's event loop was busy)
            self.failed += 1
            return (time.perf_counter() - start) * 1000
        took = (time.perf_counter() - start) * 1000
        if not answer["response"]["allowed"] or "patch" not in answer["response"]:
            self.failed += 1
        return took


def phase(admin: client.ApiClient, direct: Direct, seconds: float, tag: str) -> dict[str, Any]:
    """Ordinary Pods, labelled and not in turn, and a review posted straight to the webhook,
    one after another: all three see the same moments of a busy machine."""
    core = client.CoreV1Api(admin)
    labelled: list[float] = []
    unlabelled: list[float] = []
    straight: list[float] = []
    missing = 0
    direct.failed = 0
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        for is_labelled, into in ((True, labelled), (False, unlabelled)):
            name = f"{tag}-{n}"
            start = time.perf_counter()
            created = core.create_namespaced_pod(NS, pod(name, is_labelled, "greeter"))
            into.append((time.perf_counter() - start) * 1000)
            volumes = [v.name for v in created.spec.volumes or []]
            if is_labelled and "kuberesolver-greeter" not in volumes:
                missing += 1
            core.delete_namespaced_pod(name, NS, grace_period_seconds=0)
            n += 1
        straight.append(direct.review_ms())
    return {
        "labelled": _summary(labelled),
        "unlabelled_floor": _summary(unlabelled),
        "webhook_direct": _summary(straight),
        "webhook_direct_failed": direct.failed,
        "mount_missing": missing,
    }


def _summary(latencies: list[float]) -> dict[str, Any]:
    return {
        "p50_ms": round(percentile(latencies, 50), 1),
        "p99_ms": round(percentile(latencies, 99), 1),
        "max_ms": round(max(latencies), 1),
        "n": len(latencies),
    }


def main() -> None:
    args = options(__doc__.split("\n")[0], phase_s=(float, 30.0), hostile_rate=(float, 5.0))
    ensure_binaries()
    enter_private_network()
    result: dict[str, Any] = {"hostile_rate": args.hostile_rate, "phase_s": args.phase_s}
    with ControlPlane() as cp, tempfile.TemporaryDirectory() as tmp:
        admin = api_client(cp.admin_kubeconfig)
        apply(admin, ROOT / "crds", ROOT / "manifests/namespace.yaml", ROOT / "manifests/rbac.yaml")
        create_namespace(admin, NS)
        client.CustomObjectsApi(admin).create_namespaced_custom_object(
            "kuberesolver.io", "v1alpha1", NS, "grpctargets",
            {"apiVersion": "kuberesolver.io/v1alpha1", "kind": "GrpcTarget",
             "metadata": {"name": "greeter"}, "spec": {"service": "greeter"}},
        )  # fmt: skip
        certs = Path(tmp)
        files = cp.ca.issue(
            "webhook", "kuberesolver-webhook", ip_addresses=("127.0.0.1",), server=True
        )
        (certs / "tls.crt").write_bytes(files.cert.read_bytes())
        (certs / "tls.key").write_bytes(files.key.read_bytes())
        port = free_port()
        token = service_account_token(admin, "kuberesolver-system", "kuberesolver-operator")
        op = OperatorProcess(
            cp.token_kubeconfig("operator", token, "kuberesolver-system"),
            {
                "KUBERESOLVER_WEBHOOK_PORT": str(port),
                "KUBERESOLVER_WEBHOOK_ADDR": "127.0.0.1",
                "KUBERESOLVER_WEBHOOK_CERT_DIR": str(certs),
            },
            name="bench",
            quiet=True,
        ).start()
        try:
            register(admin, cp.ca.cert_path.read_bytes(), port)
            core = client.CoreV1Api(admin)

            def mounted() -> bool:
                created = core.create_namespaced_pod(NS, pod("probe", True, "greeter"))
                core.delete_namespaced_pod("probe", NS, grace_period_seconds=0)
                until(lambda: not core.list_namespaced_pod(NS).items, timeout_s=30)
                return any(v.name == "kuberesolver-greeter" for v in created.spec.volumes or [])

            until(mounted, timeout_s=60, message="the webhook answering")
            direct = Direct(port, cp.ca.cert_path)
            result["idle"] = phase(admin, direct, args.phase_s, "idle")
            hostile = Hostile(admin, args.hostile_rate)
            hostile.start()
            result["hostile"] = phase(admin, direct, args.phase_s, "busy")
            hostile.stop.set()
            hostile.join(30)
            result["hostile_pods"] = hostile.created
            result["hostile_refused"] = len(hostile.refused)
            result["hostile_refusals"] = sorted(set(hostile.refused))[:5]
        finally:
            op.stop()
            op.log_path.unlink(missing_ok=True)
            admin.close()
    emit(result)


if __name__ == "__main__":
    main()
