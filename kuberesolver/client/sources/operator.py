"""Library mode ``source="operator"``: ``kubernetes:///`` targets through the operator's xDS.

No snapshot file and no in-process xDS server: the channel is grpc's own on
``xds://<authority>/<service>.<namespace>``, served by the operator
(:mod:`kuberesolver.xds.ads_aio`). The mapping assumes the GrpcTarget is named after
its Service (as the README's examples do) and lives in the Service's
namespace: ``kubernetes:///greeter.shop:grpc`` -> ``xds://xds.kuberesolver.io/greeter.shop``.
The target's port is not used: the GrpcTarget's ``spec.port`` decides it.

grpc must have a bootstrap naming the authority (``GRPC_XDS_BOOTSTRAP`` or
``GRPC_XDS_BOOTSTRAP_CONFIG``): the webhook injects one into Pods annotated
``kuberesolver.io/xds: "true"``; ``python -m kuberesolver bootstrap`` writes one.
Else, with ``KUBERESOLVER_XDS_SERVER`` (the operator's xDS Service, ``HOST:PORT``),
the library adds the authority to the process's bootstrap itself
(:func:`ensure_bootstrap`): plaintext, or TLS with
``KUBERESOLVER_XDS_SERVER_CA_FILE``, plus gRFC A97 call credentials with
``KUBERESOLVER_XDS_TOKEN_FILE`` (and then
``GRPC_EXPERIMENTAL_XDS_BOOTSTRAP_CALL_CREDS=true``, unless set). grpc reads
its bootstrap when the first ``xds:`` channel starts, so this must happen first.
The authority is ``KUBERESOLVER_XDS_AUTHORITY``, default ``xds.kuberesolver.io``
(the operator's default). Standard library only.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Final

from kuberesolver.client.target import ParsedTarget
from kuberesolver.xds.bootstrap import (
    DEFAULT_AUTHORITY,
    ENV_CALL_CREDS,
    ENV_CONFIG,
    ENV_FILE,
    authority_entry,
    xds_server,
)
from kuberesolver.xds.bootstrap_inprocess import add_authority, read_bootstrap

__all__ = [
    "DEFAULT_AUTHORITY",
    "ENV_AUTHORITY",
    "ENV_SERVER",
    "ENV_SERVER_CA_FILE",
    "ENV_TOKEN_FILE",
    "authority",
    "check_bootstrap",
    "ensure_bootstrap",
    "xds_target",
]

ENV_AUTHORITY: Final = "KUBERESOLVER_XDS_AUTHORITY"
"""The operator's federation authority, when it is not ``xds.kuberesolver.io``."""
ENV_SERVER: Final = "KUBERESOLVER_XDS_SERVER"
"""``HOST:PORT`` of the operator's xDS, added to the bootstrap when none names the authority."""
ENV_SERVER_CA_FILE: Final = "KUBERESOLVER_XDS_SERVER_CA_FILE"
"""With :data:`ENV_SERVER`: the CA to verify it with (TLS); unset, plaintext."""
ENV_TOKEN_FILE: Final = "KUBERESOLVER_XDS_TOKEN_FILE"
"""With :data:`ENV_SERVER`: a token file sent as gRFC A97 call credentials (needs TLS)."""

_lock = threading.Lock()


def authority(env: Mapping[str, str] | None = None) -> str:
    """The operator's federation authority (``KUBERESOLVER_XDS_AUTHORITY``)."""
    e = os.environ if env is None else env
    value = e.get(ENV_AUTHORITY, "").strip() or DEFAULT_AUTHORITY
    if "/" in value or "%" in value:
        raise ValueError(f"{ENV_AUTHORITY} must not hold '/' or '%': {value!r}")
    return value


def xds_target(parsed: ParsedTarget, xds_authority: str) -> str:
    """``xds://<authority>/<service>.<namespace>`` for a parsed ``kubernetes:`` target."""
    return f"xds://{xds_authority}/{parsed.service}.{parsed.namespace}"


def check_bootstrap(xds_authority: str, env: Mapping[str, str] | None = None) -> None:
    """``ValueError`` unless grpc's bootstrap names ``xds_authority``, saying how to get one."""
    where, bootstrap = read_bootstrap(os.environ if env is None else env)
    how = (
        'the admission webhook injects one into Pods labelled kuberesolver.io/inject: "true" '
        'and annotated kuberesolver.io/xds: "true"; or write one with '
        "`python -m kuberesolver bootstrap --server HOST:PORT` and set GRPC_XDS_BOOTSTRAP; "
        f"or set {ENV_SERVER}=HOST:PORT and the library adds it"
    )
    if bootstrap is None:
        raise ValueError(
            f"source='operator' needs an xDS bootstrap ({ENV_FILE} or {ENV_CONFIG}) naming the "
            f"operator's authority {xds_authority!r}: {how}"
        )
    authorities = bootstrap.get("authorities") if isinstance(bootstrap, dict) else None
    if not isinstance(authorities, dict) or xds_authority not in authorities:
        raise ValueError(
            f"source='operator': the xDS bootstrap ({where}) has no authority "
            f"{xds_authority!r} (set {ENV_AUTHORITY} if the operator uses another): {how}"
        )


def ensure_bootstrap(xds_authority: str) -> None:
    """:func:`check_bootstrap`, else add the authority from ``KUBERESOLVER_XDS_SERVER``."""
    with _lock:
        try:
            check_bootstrap(xds_authority)
            return
        except ValueError:
            server = os.environ.get(ENV_SERVER, "").strip()
            if not server:
                raise
        token_file = os.environ.get(ENV_TOKEN_FILE, "").strip()
        ca_file = os.environ.get(ENV_SERVER_CA_FILE, "").strip()
        try:
            entry = authority_entry(
                xds_authority,
                xds_server(server, ca_file=ca_file or None, token_file=token_file or None),
            )
        except ValueError as exc:
            raise ValueError(
                f"{ENV_SERVER}, {ENV_SERVER_CA_FILE}, {ENV_TOKEN_FILE}: {exc}"
            ) from exc
        add_authority(xds_authority, entry)
        if token_file:
            os.environ.setdefault(ENV_CALL_CREDS, "true")
