"""API credentials without the ``kubernetes`` package: in-cluster, else a kubeconfig.

The same rule as :func:`kuberesolver.kube.kubeconfig.load_client`: the Pod's
ServiceAccount when there and no kubeconfig is named; else the named
kubeconfig, then ``$KUBECONFIG``, then ``~/.kube/config``. PyYAML is imported
only to read a kubeconfig.
"""

from __future__ import annotations

import base64
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

__all__ = ["ApiConfig", "KubeconfigError", "load_config"]

SA_TOKEN_FILE: Final = "/var/run/secrets/kubernetes.io/serviceaccount/token"
SA_CA_FILE: Final = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"


class KubeconfigError(RuntimeError):
    """No usable credentials: the message says which file and what is missing."""


@dataclass(frozen=True)
class ApiConfig:
    """Where the API server is and how to authenticate to it (files, so rotations are seen)."""

    server: str
    ca_file: str = ""
    token: str = ""
    token_file: str = ""
    client_cert_file: str = ""
    client_key_file: str = ""
    insecure: bool = False
    namespace: str = ""


def load_config(kubeconfig: str = "") -> ApiConfig:
    """The credentials, by the rule above.

    In-cluster: ``https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT``,
    the ServiceAccount's token file (re-read on rotation) and CA file.
    """
    host = os.environ.get("KUBERNETES_SERVICE_HOST", "")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "")
    if not kubeconfig and host and port and os.path.isfile(SA_TOKEN_FILE):
        if ":" in host:
            host = f"[{host}]"
        return ApiConfig(
            server=f"https://{host}:{port}", ca_file=SA_CA_FILE, token_file=SA_TOKEN_FILE
        )
    path = kubeconfig or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
    return _from_kubeconfig(Path(path) if path else Path.home() / ".kube" / "config")


def _from_kubeconfig(path: Path) -> ApiConfig:
    import yaml

    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise KubeconfigError(f"cannot read the kubeconfig {path}: {exc}") from exc
    if not isinstance(doc, dict):
        raise KubeconfigError(f"the kubeconfig {path} is not a mapping")

    def named(section: str, name: str) -> dict[str, Any]:
        for entry in doc.get(section) or []:
            if isinstance(entry, dict) and entry.get("name") == name:
                found = entry.get(section.rstrip("s")) or {}
                return found if isinstance(found, dict) else {}
        raise KubeconfigError(f"the kubeconfig {path} has no {section.rstrip('s')} {name!r}")

    context = named("contexts", str(doc.get("current-context") or ""))
    cluster = named("clusters", str(context.get("cluster") or ""))
    user = named("users", str(context.get("user") or ""))
    server = str(cluster.get("server") or "")
    if not server:
        raise KubeconfigError(f"the kubeconfig {path}: the cluster has no server")

    def file_of(key: str) -> str:
        value = str(cluster.get(key) or user.get(key) or "")
        if value and not os.path.isabs(value):
            value = str(path.parent / value)
        data = cluster.get(f"{key}-data") or user.get(f"{key}-data")
        if data and not value:
            fd, value = tempfile.mkstemp(prefix="kuberesolver-", suffix=f".{key}")
            with os.fdopen(fd, "wb") as f:
                f.write(base64.b64decode(str(data)))
        return value

    return ApiConfig(
        server=server.rstrip("/"),
        ca_file=file_of("certificate-authority"),
        token=str(user.get("token") or ""),
        token_file=str(user.get("tokenFile") or ""),
        client_cert_file=file_of("client-certificate"),
        client_key_file=file_of("client-key"),
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        namespace=str(context.get("namespace") or ""),
    )
