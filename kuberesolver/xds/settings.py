"""The xDS server's settings, from the environment (standard library only).

``KUBERESOLVER_XDS_ADDRESS``
    Where to listen (``[::]:18000``); unset or empty: no xDS server.
``KUBERESOLVER_XDS_AUTHORITY``
    The federation authority the resources are named under (default
    ``xds.kuberesolver.io``); clients dial ``xds://<authority>/<name>.<namespace>``.
``KUBERESOLVER_XDS_CERT_FILE`` / ``KUBERESOLVER_XDS_KEY_FILE``
    The serving certificate and key (PEM); both or neither (plaintext).
``KUBERESOLVER_XDS_CLIENT_CA_FILE``
    With it, clients must present a certificate this CA signed (mutual TLS).
``KUBERESOLVER_XDS_AUTH``
    ``none`` (default): every client sees every target. ``token``: a client
    presents its projected ServiceAccount token (gRFC A97 call credentials,
    ``authorization: Bearer``) and sees only the targets whose ConfigMap its
    ServiceAccount may ``get`` (:mod:`.auth`); needs TLS, as grpc sends call
    credentials only over a secure channel.
``KUBERESOLVER_XDS_AUDIENCE``
    The audience the tokens must carry (default ``xds.kuberesolver.io``).
``KUBERESOLVER_XDS_POD_READINESS``
    ``true`` (default): the operator also watches Pods and serves an endpoint's
    readiness from its Pod as soon as the Pod's status changes, before
    kube-controller-manager rewrites the EndpointSlice (needs ``list``/``watch``
    on pods: ``manifests/optional/xds/``). ``false``: the slices only.
``KUBERESOLVER_XDS_METHOD_TIMEOUTS``
    Who is served the service config's ``methodConfig`` timeouts (as each
    route's ``max_stream_duration``). ``auto`` (default): every client but
    grpc's C core (grpcio, C++), which ends such calls 1-2 s early
    (grpc/grpc#34547), known by the ``user_agent_name`` of its xDS node;
    ``all``; ``none``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from kuberesolver.xds.auth import DEFAULT_AUDIENCE
from kuberesolver.xds.bootstrap import DEFAULT_AUTHORITY

__all__ = ["ENV", "METHOD_TIMEOUTS", "XdsSettings"]

ENV: Final = {
    "address": "KUBERESOLVER_XDS_ADDRESS",
    "authority": "KUBERESOLVER_XDS_AUTHORITY",
    "cert_file": "KUBERESOLVER_XDS_CERT_FILE",
    "key_file": "KUBERESOLVER_XDS_KEY_FILE",
    "client_ca_file": "KUBERESOLVER_XDS_CLIENT_CA_FILE",
    "auth": "KUBERESOLVER_XDS_AUTH",
    "audience": "KUBERESOLVER_XDS_AUDIENCE",
    "pod_readiness": "KUBERESOLVER_XDS_POD_READINESS",
    "method_timeouts": "KUBERESOLVER_XDS_METHOD_TIMEOUTS",
}

METHOD_TIMEOUTS: Final = ("auto", "all", "none")


@dataclass(frozen=True, slots=True)
class XdsSettings:
    address: str = ""
    """Where to listen; ``""``: the xDS server is off."""
    authority: str = DEFAULT_AUTHORITY
    cert_file: str = ""
    key_file: str = ""
    client_ca_file: str = ""
    auth: str = "none"
    """``none`` or ``token`` (ServiceAccount tokens, TokenReview and SubjectAccessReview)."""
    audience: str = DEFAULT_AUDIENCE
    pod_readiness: bool = True
    """Serve readiness from the Pods as well as the EndpointSlices (the operator's feed)."""
    method_timeouts: str = "auto"
    """``auto`` (every client but grpc's C core), ``all`` or ``none``."""

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    @property
    def tls(self) -> bool:
        return bool(self.cert_file)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> XdsSettings:
        """Read :data:`ENV`; ``ValueError`` naming the variable for an unusable combination."""
        e = os.environ if env is None else env
        values = {field: e.get(name, "").strip() for field, name in ENV.items()}
        settings = cls(
            address=values["address"],
            authority=values["authority"] or DEFAULT_AUTHORITY,
            cert_file=values["cert_file"],
            key_file=values["key_file"],
            client_ca_file=values["client_ca_file"],
            auth=values["auth"] or "none",
            audience=values["audience"] or DEFAULT_AUDIENCE,
            pod_readiness=_flag(ENV["pod_readiness"], values["pod_readiness"], default=True),
            method_timeouts=values["method_timeouts"].lower() or "auto",
        )
        if settings.method_timeouts not in METHOD_TIMEOUTS:
            raise ValueError(
                f"{ENV['method_timeouts']} must be 'auto', 'all' or 'none', "
                f"got {values['method_timeouts']!r}"
            )
        if settings.auth not in ("none", "token"):
            raise ValueError(f"{ENV['auth']} must be 'none' or 'token', got {settings.auth!r}")
        if settings.auth == "token" and not settings.tls:
            raise ValueError(
                f"{ENV['auth']}=token needs TLS (grpc sends call credentials only over a "
                f"secure channel): set {ENV['cert_file']} and {ENV['key_file']}"
            )
        if bool(settings.cert_file) != bool(settings.key_file):
            raise ValueError(f"set both {ENV['cert_file']} and {ENV['key_file']}, or neither")
        if settings.client_ca_file and not settings.tls:
            raise ValueError(
                f"{ENV['client_ca_file']} needs TLS: set {ENV['cert_file']} and {ENV['key_file']}"
            )
        if "/" in settings.authority or "%" in settings.authority:
            raise ValueError(f"{ENV['authority']} must not hold '/' or '%': {settings.authority!r}")
        if settings.address and ":" not in settings.address:
            raise ValueError(f"{ENV['address']} must be HOST:PORT, got {settings.address!r}")
        return settings


def _flag(name: str, value: str, *, default: bool) -> bool:
    if not value:
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name}={value!r} is not a boolean (use 1/true/yes/on or 0/false/no/off)")
