"""xDS bootstrap injection: what the webhook adds to a Pod annotated
``kuberesolver.io/xds: "true"`` so that its grpc clients reach the operator's xDS.

Pure: :func:`plan_xds` decides, :func:`inject_xds` applies it to a Pod dict.
Every container gets ``GRPC_XDS_BOOTSTRAP_CONFIG``, the bootstrap inline (grpcio's
C core and grpc-go both read it; a file named by ``GRPC_XDS_BOOTSTRAP`` would
win over it), naming the operator's xDS Service
(``kuberesolver-xds.<operator namespace>.svc:18000``) for the authority
``xds.kuberesolver.io``: a client dials ``xds://xds.kuberesolver.io/<name>.<namespace>``.

When the operator's xDS speaks TLS, the Pod also gets one projected volume,
``kuberesolver-xds``, mounted read-only at ``/var/run/secrets/kuberesolver`` in
every container it changes:

- ``token``: the Pod's ServiceAccount token for our audience
  (``xds.kuberesolver.io``), short-lived (:data:`TOKEN_EXPIRATION_S`, kubelet
  renews it), which the bootstrap's gRFC A97 call credentials
  (``jwt_token_file``) send on the ADS stream; grpc needs
  ``GRPC_EXPERIMENTAL_XDS_BOOTSTRAP_CALL_CREDS=true`` for that, so it is set too;
- ``ca.crt``: the CA the client trusts for the xDS server, carried in the Pod's
  own annotation ``kuberesolver.io/xds-ca`` and projected by the downward API
  (nothing needs to exist in the Pod's namespace).

Plaintext xDS gets the variable only: grpc sends call credentials only over TLS.
A container that already sets ``GRPC_XDS_BOOTSTRAP`` or
``GRPC_XDS_BOOTSTRAP_CONFIG`` (or already mounts something at the token
directory) is left alone, with a warning. Standard library only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from kuberesolver.core.names import quoted
from kuberesolver.xds.auth import DEFAULT_AUDIENCE
from kuberesolver.xds.bootstrap import (
    DEFAULT_AUTHORITY,
    ENV_CALL_CREDS,
    ENV_CONFIG,
    ENV_FILE,
    build_bootstrap,
)
from kuberesolver.xds.settings import XdsSettings

__all__ = [
    "CA_ANNOTATION",
    "DEFAULT_SERVICE",
    "DEFAULT_XDS_PORT",
    "TOKEN_DIR",
    "TOKEN_EXPIRATION_S",
    "VOLUME",
    "XDS_ANNOTATION",
    "InjectSettings",
    "XdsInjection",
    "bootstrap_for",
    "default_server",
    "inject_xds",
    "plan_xds",
    "wants_xds",
]

XDS_ANNOTATION: Final = "kuberesolver.io/xds"
"""``"true"``: inject the bootstrap (the Pod also needs the label ``kuberesolver.io/inject``)."""
CA_ANNOTATION: Final = "kuberesolver.io/xds-ca"
"""Set by the webhook: the xDS server's CA (PEM), projected into ``ca.crt``."""
VOLUME: Final = "kuberesolver-xds"
TOKEN_DIR: Final = "/var/run/secrets/kuberesolver"
TOKEN_FILE: Final = "token"
CA_FILE: Final = "ca.crt"
TOKEN_EXPIRATION_S: Final = 600
"""The projected token's lifetime: the shortest Kubernetes allows; kubelet renews it at 80 %."""
DEFAULT_SERVICE: Final = "kuberesolver-xds"
DEFAULT_XDS_PORT: Final = 18000
"""The port of Service ``kuberesolver-xds`` (manifests/optional/xds/)."""


def default_server(operator_namespace: str) -> str:
    """The operator's xDS Service as a grpc target: ``kuberesolver-xds.<ns>.svc:18000``."""
    return f"{DEFAULT_SERVICE}.{operator_namespace}.svc:{DEFAULT_XDS_PORT}"


@dataclass(frozen=True, slots=True)
class XdsInjection:
    """Where injected clients find the operator's xDS, and how they trust and prove themselves."""

    server_uri: str
    authority: str = DEFAULT_AUTHORITY
    ca_pem: str = ""
    """The CA of the xDS server's certificate; ``""``: the server is plaintext."""
    audience: str = DEFAULT_AUDIENCE
    token_expiration_s: int = TOKEN_EXPIRATION_S

    @property
    def tls(self) -> bool:
        return bool(self.ca_pem)


@dataclass(frozen=True, slots=True)
class XdsPlan:
    """What :func:`inject_xds` adds: the env per container, and the volume (TLS only)."""

    env: tuple[tuple[str, str], ...]
    volume: Mapping[str, Any] | None
    ca_pem: str
    containers: tuple[str, ...]
    """The containers that get it (the others already have a bootstrap of their own)."""


ENV_SERVER: Final = "KUBERESOLVER_XDS_INJECT_SERVER"
ENV_CA_FILE: Final = "KUBERESOLVER_XDS_INJECT_CA_FILE"
ENV_AUDIENCE: Final = "KUBERESOLVER_XDS_AUDIENCE"
ENV_OPERATOR_NAMESPACE: Final = "KUBERESOLVER_LEASE_NAMESPACE"


@dataclass(frozen=True, slots=True)
class InjectSettings:
    """The webhook's view of the operator's xDS, from the environment.

    ``KUBERESOLVER_XDS_ADDRESS`` must be set (the operator serves xDS), else
    ``off`` says why. ``KUBERESOLVER_XDS_INJECT_SERVER``: what clients dial
    (default :func:`default_server` of the operator's namespace,
    ``KUBERESOLVER_LEASE_NAMESPACE``). Under TLS (``KUBERESOLVER_XDS_CERT_FILE``)
    clients trust ``KUBERESOLVER_XDS_INJECT_CA_FILE``, by default ``ca.crt``
    beside the certificate (a cert-manager or ``kubernetes.io/tls`` Secret's
    layout). The token's audience is ``KUBERESOLVER_XDS_AUDIENCE``.
    """

    off: str = ""
    server_uri: str = ""
    authority: str = DEFAULT_AUTHORITY
    ca_file: str = ""
    audience: str = DEFAULT_AUDIENCE

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> InjectSettings:
        e = os.environ if env is None else env
        try:
            xds = XdsSettings.from_env(e)
        except ValueError as exc:
            return cls(off=f"the operator's xDS settings are unusable: {exc}")
        if not xds.enabled:
            return cls(off="the operator does not serve xDS (KUBERESOLVER_XDS_ADDRESS is unset)")
        namespace = e.get(ENV_OPERATOR_NAMESPACE, "").strip() or "kuberesolver-system"
        ca_file = e.get(ENV_CA_FILE, "").strip()
        if xds.tls and not ca_file:
            ca_file = str(Path(xds.cert_file).with_name(CA_FILE))
        return cls(
            server_uri=e.get(ENV_SERVER, "").strip() or default_server(namespace),
            authority=xds.authority,
            ca_file=ca_file if xds.tls else "",
            audience=e.get(ENV_AUDIENCE, "").strip() or DEFAULT_AUDIENCE,
        )

    def injection(
        self, read: Callable[[str], str] = lambda p: Path(p).read_text(encoding="utf-8")
    ) -> XdsInjection:
        """The injection, the CA read now (``read``); ``ValueError`` saying why there is none."""
        if self.off:
            raise ValueError(self.off)
        ca_pem = ""
        if self.ca_file:
            try:
                ca_pem = read(self.ca_file)
            except OSError as exc:
                raise ValueError(f"cannot read the xDS CA {self.ca_file}: {exc}") from exc
            if "-----BEGIN CERTIFICATE-----" not in ca_pem:
                raise ValueError(f"the xDS CA {self.ca_file} holds no PEM certificate")
        return XdsInjection(
            server_uri=self.server_uri,
            authority=self.authority,
            ca_pem=ca_pem,
            audience=self.audience,
        )


def wants_xds(annotations: Mapping[str, str]) -> tuple[bool, list[str]]:
    """Whether the Pod asks for the bootstrap (``"true"``), and a warning for a value
    that is neither ``"true"`` nor ``"false"``."""
    raw = annotations.get(XDS_ANNOTATION)
    if raw is None:
        return False, []
    value = raw.strip().lower()
    if value in ("true", "false"):
        return value == "true", []
    return False, [
        f'{XDS_ANNOTATION}: {quoted(raw)} is neither "true" nor "false"; no bootstrap added'
    ]


def bootstrap_for(config: XdsInjection, namespace: str) -> dict[str, Any]:
    """The bootstrap of an injected client (the same as ``python -m kuberesolver bootstrap``
    writes, with ``--ca-file`` and A97 ``call_creds`` on the projected token under TLS)."""
    ca_file = f"{TOKEN_DIR}/{CA_FILE}" if config.tls else None
    return build_bootstrap(
        config.server_uri,
        config.authority,
        node_id=f"kuberesolver-injected.{namespace}",
        node_cluster=namespace,
        ca_file=ca_file,
        token_file=f"{TOKEN_DIR}/{TOKEN_FILE}" if config.tls else None,
    )


def _volume(config: XdsInjection) -> dict[str, Any]:
    return {
        "name": VOLUME,
        "projected": {
            "sources": [
                {
                    "serviceAccountToken": {
                        "audience": config.audience,
                        "expirationSeconds": config.token_expiration_s,
                        "path": TOKEN_FILE,
                    }
                },
                {
                    "downwardAPI": {
                        "items": [
                            {
                                "path": CA_FILE,
                                "fieldRef": {
                                    "fieldPath": f"metadata.annotations['{CA_ANNOTATION}']"
                                },
                            }
                        ]
                    }
                },
            ]
        },
    }


def plan_xds(
    pod: Mapping[str, Any], namespace: str, config: XdsInjection
) -> tuple[XdsPlan | None, list[str]]:
    """What to add to ``pod`` (``None``: nothing), and warnings for what is left alone."""
    spec = pod.get("spec") or {}
    warnings: list[str] = []
    if any(v.get("name") == VOLUME for v in spec.get("volumes") or []):
        return None, [f"the Pod already has a volume {VOLUME!r}; no xDS bootstrap added"]
    chosen: list[str] = []
    for container in spec.get("containers") or []:
        name = str(container.get("name", ""))
        own = sorted(
            e.get("name")
            for e in container.get("env") or []
            if e.get("name") in (ENV_CONFIG, ENV_FILE)
        )
        if own:
            warnings.append(
                f"container {name!r} sets {', '.join(own)}: its own xDS bootstrap is left alone"
            )
            continue
        if config.tls and any(
            m.get("mountPath", "").rstrip("/") == TOKEN_DIR
            for m in container.get("volumeMounts") or []
        ):
            warnings.append(
                f"container {name!r} already mounts something at {TOKEN_DIR}; "
                "no xDS bootstrap added to it"
            )
            continue
        chosen.append(name)
    if not chosen:
        return None, warnings
    env = [(ENV_CONFIG, json.dumps(bootstrap_for(config, namespace), sort_keys=True))]
    if config.tls:
        env.append((ENV_CALL_CREDS, "true"))
    return (
        XdsPlan(
            env=tuple(env),
            volume=_volume(config) if config.tls else None,
            ca_pem=config.ca_pem,
            containers=tuple(chosen),
        ),
        warnings,
    )


def inject_xds(pod: MutableMapping[str, Any], plan: XdsPlan) -> None:
    """Apply ``plan`` to ``pod`` (idempotent): the env, and under TLS the volume, its
    read-only mount and the CA annotation. A variable a container already sets is kept."""
    spec = pod.setdefault("spec", {})
    if plan.volume is not None:
        volumes = spec.setdefault("volumes", [])
        if not any(v.get("name") == VOLUME for v in volumes):
            volumes.append(dict(plan.volume))
        metadata = pod.setdefault("metadata", {})
        annotations = metadata.get("annotations") or {}
        metadata["annotations"] = {**annotations, CA_ANNOTATION: plan.ca_pem}
    for container in spec.get("containers") or []:
        if container.get("name") not in plan.containers:
            continue
        env = container.setdefault("env", [])
        present = {e.get("name") for e in env}
        env.extend({"name": k, "value": v} for k, v in plan.env if k not in present)
        if plan.volume is not None:
            mounts = container.setdefault("volumeMounts", [])
            if not any(m.get("name") == VOLUME for m in mounts):
                mounts.append({"name": VOLUME, "mountPath": TOKEN_DIR, "readOnly": True})
