"""The webhook's self-managed TLS, end to end on the real apiserver, through its Service.

Two operator replicas run under the project's RBAC (manifests/rbac.yaml) and
serve the webhook on two pod IPs of the tests' network. The shipped
manifests/webhook.yaml is applied unchanged: the apiserver calls
``kuberesolver-webhook.kuberesolver-system.svc`` through the Service's
ClusterIP (a real kube-proxy routes it to the pods standing for the
replicas), and trusts only the caBundle that the leader patched in: no test
CA is given to anyone. A short certificate lifetime forces a rotation while
the test keeps creating Pods.
"""

from __future__ import annotations

import base64
import itertools
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from kubernetes import client

from testenv.kube import apply_object, documents
from testenv.kube_proxy import KubeProxy
from testenv.netns import pod_ip
from testenv.operator_process import OperatorProcess
from testenv.wait import until
from tests.adoption._kubelet import run_pod
from tests.integration.operator.helpers import create_target
from tests.integration.operator.test_webhook import INJECT, MOUNT_ROOT, pod, recreate

ROOT = Path(__file__).resolve().parents[3]
SYSTEM = "kuberesolver-system"
SECRET = "kuberesolver-webhook-tls"
CONFIGURATION = "kuberesolver-mounts"
PORT = 9443
LIFETIME_S = 30  # renewed once less than a third is left: about 20 s after issue
# The operator Pods' labels, as the webhook Service of manifests/webhook.yaml selects them.
LABELS = {
    "app.kubernetes.io/name": "kuberesolver-operator",
    "app.kubernetes.io/instance": "kuberesolver",
}

pytestmark = pytest.mark.integration


def _ignore_404(fn: Callable[[], Any]) -> None:
    try:
        fn()
    except client.ApiException as exc:
        if exc.status != 404:
            raise


def _clean(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    _ignore_404(lambda: core.delete_namespaced_secret(SECRET, SYSTEM))
    _ignore_404(
        lambda: client.AdmissionregistrationV1Api(api).delete_mutating_webhook_configuration(
            CONFIGURATION
        )
    )
    for name in ("kuberesolver-operator-wa", "kuberesolver-operator-wb"):
        _ignore_404(lambda n=name: core.delete_namespaced_pod(n, SYSTEM, grace_period_seconds=0))


@pytest.fixture
def shipped_webhook(kube_proxy: KubeProxy, admin_api: client.ApiClient) -> Iterator[None]:
    """manifests/webhook.yaml as shipped (no caBundle), and no Secret yet."""
    _clean(admin_api)
    for doc in documents(ROOT / "manifests" / "webhook.yaml"):
        apply_object(admin_api, doc)
    config = client.AdmissionregistrationV1Api(admin_api).read_mutating_webhook_configuration(
        CONFIGURATION
    )
    assert all(not h.client_config.ca_bundle for h in config.webhooks)
    yield
    _clean(admin_api)


def replica(
    factory: Callable[..., OperatorProcess], api: client.ApiClient, name: str, ip: str
) -> OperatorProcess:
    """An operator serving the webhook on ``ip``, and a Pod standing for it behind the Service."""
    op = factory(
        env={
            "KUBERESOLVER_WEBHOOK_PORT": str(PORT),
            "KUBERESOLVER_WEBHOOK_ADDR": ip,
            "KUBERESOLVER_WEBHOOK_CERT_LIFETIME_S": str(LIFETIME_S),
            "KUBERESOLVER_WEBHOOK_TLS_CHECK_S": "1",
        },
        name=name,
    )
    run_pod(api, SYSTEM, f"kuberesolver-operator-{name}", ip, LABELS, port=("webhook", PORT))
    return op


def secret_data(api: client.ApiClient) -> dict[str, bytes] | None:
    try:
        secret = client.CoreV1Api(api).read_namespaced_secret(SECRET, SYSTEM)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}


def secret_serial(api: client.ApiClient) -> int:
    data = secret_data(api)
    assert data is not None, "no Secret yet"
    return int(x509.load_pem_x509_certificate(data["tls.crt"]).serial_number)


def ca_bundles(api: client.ApiClient) -> set[bytes]:
    config = client.AdmissionregistrationV1Api(api).read_mutating_webhook_configuration(
        CONFIGURATION
    )
    return {base64.b64decode(h.client_config.ca_bundle or "") for h in config.webhooks}


def served_serial(ip: str) -> int | None:
    """The serial of the certificate a new handshake with the replica gets."""
    try:
        pem = ssl.get_server_certificate((ip, PORT), timeout=3)
    except OSError:
        return None
    return int(x509.load_pem_x509_certificate(pem.encode()).serial_number)


def mounted(admitted: dict[str, Any]) -> bool:
    mounts = admitted["spec"]["containers"][0].get("volumeMounts") or []
    return any(m["mountPath"].startswith(MOUNT_ROOT) for m in mounts)


def test_self_managed_tls_is_trusted_by_the_apiserver_and_rotates_without_a_failed_call(
    shipped_webhook: None,
    admin_api: client.ApiClient,
    namespace: str,
    operator_factory: Callable[..., OperatorProcess],
) -> None:
    ips = {"wa": pod_ip(241), "wb": pod_ip(242)}
    replicas = {name: replica(operator_factory, admin_api, name, ip) for name, ip in ips.items()}
    create_target(admin_api, namespace, "greeter", {"service": "greeter"})

    # The leader created the Secret and patched its CA bundle into the configuration.
    def patched() -> bool:
        data = secret_data(admin_api)
        return data is not None and ca_bundles(admin_api) == {data["ca.crt"]}

    until(patched, timeout_s=60, message="the Secret and the patched caBundle")
    bundle = ca_bundles(admin_api)
    first = secret_serial(admin_api)

    # The apiserver calls the webhook through the Service with only that bundle.
    probe = pod("probe", INJECT, {"kuberesolver.io/targets": "greeter"})
    until(
        lambda: mounted(recreate(admin_api, namespace, probe)[0]),
        timeout_s=60,
        message="an annotated Pod mutated through the Service",
    )
    until(
        lambda: all(served_serial(ip) == first for ip in ips.values()),
        timeout_s=30,
        message="both replicas serving the Secret's certificate",
    )
    pids = {name: op.popen.pid for name, op in replicas.items() if op.popen}

    # Keep creating Pods through the rotation: every one must be mutated.
    numbers = itertools.count()

    def through(message: str, done: Callable[[], bool]) -> list[str]:
        """Create annotated Pods until ``done()``; the names of those left unmutated."""
        unmutated: list[str] = []
        created = 0

        def step() -> bool:
            nonlocal created
            body = pod(f"p{next(numbers)}", INJECT, {"kuberesolver.io/targets": "greeter"})
            admitted, _ = recreate(admin_api, namespace, body)
            created += 1
            if not mounted(admitted):
                unmutated.append(body["metadata"]["name"])
            return done()

        until(step, timeout_s=LIFETIME_S * 3, message=message)
        print(f"{message}: {created} Pods created, {len(unmutated)} unmutated")
        assert created >= 3
        return unmutated

    def served_everywhere(serial: int) -> bool:
        return all(served_serial(ip) == serial for ip in ips.values())

    def renewed_from(old: int) -> bool:
        now = secret_serial(admin_api)
        return now != old and served_everywhere(now)

    assert through("a rotation served by both", lambda: renewed_from(first)) == []
    second = secret_serial(admin_api)
    # Only the leaf rotated: the bundle the apiserver trusts did not change.
    assert ca_bundles(admin_api) == bundle

    # A deleted Secret: the leader starts over with a new CA, which is trusted beside
    # the old one (still served until each replica reads the new Secret).
    client.CoreV1Api(admin_api).delete_namespaced_secret(SECRET, SYSTEM)
    assert through("a new CA after the Secret was deleted", lambda: renewed_from(second)) == []
    (old_bundle,) = bundle
    (new_bundle,) = ca_bundles(admin_api)
    assert new_bundle.endswith(old_bundle)
    assert new_bundle != old_bundle

    # Only the Lease holder wrote the Secret and patched the configuration.
    holder = (
        client.CoordinationV1Api(admin_api)
        .read_namespaced_lease("kuberesolver-operator", SYSTEM)
        .spec.holder_identity
    )
    writers = {
        op.identity for op in replicas.values()
        if "webhook TLS: Secret" in op.log_text() or "caBundle patched" in op.log_text()
    }  # fmt: skip
    assert writers == {holder}

    # The same processes: reloaded, not restarted.
    for name, op in replicas.items():
        assert op.alive, op.log_tail()
        assert op.popen is not None
        assert op.popen.pid == pids[name]
    after = pod("after", INJECT, {"kuberesolver.io/targets": "greeter"})
    assert mounted(recreate(admin_api, namespace, after)[0])
