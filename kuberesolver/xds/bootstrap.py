"""The one builder of grpc xDS bootstraps: an authority that sends ``xds://<authority>/...``
targets to an ADS server of ours.

Used for the operator's server (``python -m kuberesolver bootstrap``, the
webhook, library mode ``source="operator"``) and for the client's in-process
server (:mod:`.bootstrap_inprocess` publishes it in the process's environment).
Standard library only. gRFC A47 (federation) decides the names: a channel on
``xds://<authority>/<name>`` looks ``<authority>`` up in the bootstrap's
``authorities`` and asks that authority's servers for the Listener
``xdstp://<authority>/envoy.config.listener.v3.Listener/<name>`` (the
authority's ``client_listener_resource_name_template``, written out here
though it is also grpc's default). Every ``xdstp://`` name the server returns
(the Cluster, the ClusterLoadAssignment) must carry an authority the bootstrap
lists, or grpc refuses to fetch it. The top-level ``xds_servers`` must exist
even when every target names an authority; it points at the same server.

Transport security (``channel_creds``): ``insecure``, or ``tls`` with files
(gRFC A65: ``ca_certificate_file``, and ``certificate_file`` with
``private_key_file`` for mutual TLS).

Who the client is (``call_creds``, gRFC A97): ``jwt_token_file``, the
client's projected ServiceAccount token, sent as ``authorization: Bearer``
on the ADS stream. grpc reads the field only with
``GRPC_EXPERIMENTAL_XDS_BOOTSTRAP_CALL_CREDS=true`` (grpcio 1.85 and grpc-go
>= 1.77 have it) and sends it only over TLS.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

__all__ = [
    "DEFAULT_AUTHORITY",
    "ENV_CALL_CREDS",
    "ENV_CONFIG",
    "ENV_FILE",
    "LISTENER_TEMPLATE",
    "authority_entry",
    "build_bootstrap",
    "dumps",
    "xds_server",
]

DEFAULT_AUTHORITY: Final = "xds.kuberesolver.io"
"""The operator's authority (its one definition): unlike the in-process ``kuberesolver``,
a domain name of ours."""

ENV_FILE: Final = "GRPC_XDS_BOOTSTRAP"
"""grpc's variable naming a bootstrap file; it wins over :data:`ENV_CONFIG`."""
ENV_CONFIG: Final = "GRPC_XDS_BOOTSTRAP_CONFIG"
"""grpc's variable holding a bootstrap inline (JSON)."""
ENV_CALL_CREDS: Final = "GRPC_EXPERIMENTAL_XDS_BOOTSTRAP_CALL_CREDS"
"""``true``: grpc reads the bootstrap's ``call_creds`` (gRFC A97)."""

LISTENER_TEMPLATE: Final = "xdstp://{authority}/envoy.config.listener.v3.Listener/%s"
"""A47's listener name template; ``%s`` is the target's path (``<name>.<namespace>``)."""


def _channel_creds(
    ca_file: str | None, cert_file: str | None, key_file: str | None
) -> list[dict[str, Any]]:
    if (cert_file is None) != (key_file is None):
        raise ValueError("a client certificate needs both its certificate and its key file")
    if ca_file is None and cert_file is None:
        return [{"type": "insecure"}]
    config: dict[str, str] = {}
    if ca_file is not None:
        config["ca_certificate_file"] = ca_file
    if cert_file is not None and key_file is not None:
        config["certificate_file"] = cert_file
        config["private_key_file"] = key_file
    return [{"type": "tls", "config": config}]


def xds_server(
    server_uri: str,
    *,
    ca_file: str | None = None,
    cert_file: str | None = None,
    key_file: str | None = None,
    token_file: str | None = None,
) -> dict[str, Any]:
    """One ``xds_servers`` entry: ``server_uri`` (a grpc target), plaintext or TLS, and A97
    call credentials with ``token_file`` (needs TLS: ``ca_file``).

    ``ValueError`` for an empty URI, half a client certificate, or a token without TLS.
    """
    if not server_uri.strip():
        raise ValueError("the xDS server URI is empty")
    if token_file is not None and ca_file is None:
        raise ValueError("a token file needs TLS (grpc sends call credentials only over TLS)")
    server: dict[str, Any] = {
        "server_uri": server_uri,
        "channel_creds": _channel_creds(ca_file, cert_file, key_file),
        "server_features": ["xds_v3"],
    }
    if token_file is not None:
        server["call_creds"] = [
            {"type": "jwt_token_file", "config": {"jwt_token_file": token_file}}
        ]
    return server


def authority_entry(authority: str, server: Mapping[str, Any]) -> dict[str, Any]:
    """The ``authorities`` entry that sends ``authority``'s targets to ``server``
    (an :func:`xds_server` entry). ``ValueError`` for a name grpc cannot use."""
    if not authority or "/" in authority or "%" in authority:
        raise ValueError(
            f"the authority must be a non-empty name without '/' or '%': {authority!r}"
        )
    return {
        "xds_servers": [dict(server)],
        "client_listener_resource_name_template": LISTENER_TEMPLATE.format(authority=authority),
    }


def build_bootstrap(
    server_uri: str,
    authority: str = DEFAULT_AUTHORITY,
    *,
    node_id: str = "kuberesolver-client",
    node_cluster: str = "",
    zone: str = "",
    ca_file: str | None = None,
    cert_file: str | None = None,
    key_file: str | None = None,
    token_file: str | None = None,
    extra_authorities: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """A bootstrap whose ``authority`` (and top-level server) is our ADS server at ``server_uri``.

    ``ValueError`` as :func:`xds_server` and :func:`authority_entry` raise it.
    """
    server = xds_server(
        server_uri, ca_file=ca_file, cert_file=cert_file, key_file=key_file, token_file=token_file
    )
    entry = authority_entry(authority, server)
    node: dict[str, Any] = {"id": node_id}
    if node_cluster:
        node["cluster"] = node_cluster
    if zone:
        node["locality"] = {"zone": zone}
    authorities: dict[str, Any] = {k: dict(v) for k, v in (extra_authorities or {}).items()}
    authorities[authority] = entry
    return {"xds_servers": [server], "node": node, "authorities": authorities}


def dumps(bootstrap: Mapping[str, Any]) -> str:
    """The bootstrap as the file grpc reads (``GRPC_XDS_BOOTSTRAP``)."""
    return json.dumps(bootstrap, indent=2, sort_keys=True) + "\n"
