"""The operator's mounts webhook on 127.0.0.1, registered with the test apiserver.

The configuration is the shipped static one (manifests/webhook.yaml) with the
Service reference swapped for ``https://127.0.0.1:PORT`` and the test CA as
its bundle; the operator serves a certificate issued by that CA from files.
"""

from __future__ import annotations

import base64
import contextlib
import copy
from collections.abc import Iterator
from pathlib import Path

from kubernetes import client

from testenv.controlplane import ControlPlane, free_port
from testenv.kube import apply_object, documents

__all__ = ["registered", "webhook_env"]

ROOT = Path(__file__).resolve().parent.parent


def webhook_env(control_plane: ControlPlane, cert_dir: Path) -> dict[str, str]:
    """The operator's settings to serve the webhook on a free loopback port, with a
    certificate for 127.0.0.1 written into ``cert_dir``."""
    cert_dir.mkdir(parents=True, exist_ok=True)
    files = control_plane.ca.issue(
        "webhook", "kuberesolver-webhook", ip_addresses=("127.0.0.1",), server=True
    )
    (cert_dir / "tls.crt").write_bytes(files.cert.read_bytes())
    (cert_dir / "tls.key").write_bytes(files.key.read_bytes())
    return {
        "KUBERESOLVER_WEBHOOK_PORT": str(free_port()),
        "KUBERESOLVER_WEBHOOK_ADDR": "127.0.0.1",
        "KUBERESOLVER_WEBHOOK_CERT_DIR": str(cert_dir),
    }


@contextlib.contextmanager
def registered(
    admin_api: client.ApiClient, control_plane: ControlPlane, port: int
) -> Iterator[None]:
    """The shipped MutatingWebhookConfiguration, calling https://127.0.0.1:PORT with the test CA."""
    config = next(
        d for d in documents(ROOT / "manifests/webhook.yaml")
        if d["kind"] == "MutatingWebhookConfiguration"
    )  # fmt: skip
    config = copy.deepcopy(config)
    config["metadata"]["annotations"] = {}
    ca_bundle = base64.b64encode(control_plane.ca.cert_path.read_bytes()).decode()
    for hook in config["webhooks"]:
        path = hook["clientConfig"]["service"]["path"]
        hook["clientConfig"] = {"url": f"https://127.0.0.1:{port}{path}", "caBundle": ca_bundle}
    apply_object(admin_api, config)
    try:
        yield
    finally:
        client.AdmissionregistrationV1Api(admin_api).delete_mutating_webhook_configuration(
            config["metadata"]["name"]
        )
