"""The process-wide xDS bootstrap: an authority of our own, merged with any existing one.

grpc reads its xDS bootstrap once per process-wide xDS client, from
``GRPC_XDS_BOOTSTRAP`` (a file) or else ``GRPC_XDS_BOOTSTRAP_CONFIG`` (JSON).
We add the federation authority ``kuberesolver`` that points at our in-process
ADS server, so ``xds://kuberesolver/<name>`` channels are ours and every other
``xds:`` target keeps going where the application's own bootstrap sends it.

- No bootstrap yet: we set ``GRPC_XDS_BOOTSTRAP_CONFIG`` to ours (our server is
  also the top-level server, which grpc requires to exist).
- A bootstrap already set: we load it, add our authority, and publish the merge
  in ``GRPC_XDS_BOOTSTRAP_CONFIG`` (dropping ``GRPC_XDS_BOOTSTRAP``, which grpc
  would otherwise prefer). Its own servers, node and authorities are untouched.
- An existing authority named ``kuberesolver`` that is not ours is an error.
- The server Listener template (``server_listener_resource_name_template``,
  for :mod:`kuberesolver.server`) names Listeners under our authority, unless
  the application's bootstrap has a template of its own.
- A bootstrap we installed (found again after a restart, or inherited by a
  child process through the environment) is rebuilt from the application's
  original, which it carries under ``kuberesolver_installed``.

Limitation: grpc caches the bootstrap in its xDS client while any ``xds:``
channel is alive. Create kuberesolver channels before the application's own
``xds:`` channels, or let all of them close first.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from typing import Any, Final

from kuberesolver.xds.bootstrap import (
    ENV_CONFIG,
    ENV_FILE,
    authority_entry,
    build_bootstrap,
    xds_server,
)
from kuberesolver.xds.resources import AUTHORITY
from kuberesolver.xds.serving import SERVER_LISTENER_TEMPLATE

__all__ = [
    "add_authority",
    "install_bootstrap",
    "merge_bootstrap",
    "own_bootstrap",
    "read_bootstrap",
]

log = logging.getLogger("kuberesolver.xds")

_MARK: Final = "kuberesolver"
_MARKER_KEY: Final = "kuberesolver_installed"


def own_bootstrap(uri: str) -> dict[str, Any]:
    """A bootstrap with only our ADS server, for a process that had none."""
    bootstrap = build_bootstrap(
        uri, AUTHORITY, node_id=f"{_MARK}-{os.getpid()}", node_cluster=_MARK
    )
    bootstrap["node"]["metadata"] = {_MARK: True}
    bootstrap["server_listener_resource_name_template"] = SERVER_LISTENER_TEMPLATE
    return bootstrap


def merge_bootstrap(existing: dict[str, Any], uri: str) -> dict[str, Any]:
    """``existing`` plus our authority. Raises ValueError on a foreign ``kuberesolver`` one."""
    merged = dict(existing)
    authorities = dict(merged.get("authorities") or {})
    if AUTHORITY in authorities:
        raise ValueError(
            f"the process's xDS bootstrap already defines an authority {AUTHORITY!r}; "
            "kuberesolver needs that name for its own in-process xDS server"
        )
    server = xds_server(uri)
    authorities[AUTHORITY] = authority_entry(AUTHORITY, server)
    merged["authorities"] = authorities
    if not merged.get("xds_servers"):
        merged["xds_servers"] = [server]
    # only for kuberesolver.server's drainable servers; an application's own stays
    merged.setdefault("server_listener_resource_name_template", SERVER_LISTENER_TEMPLATE)
    return merged


def _base_of(bootstrap: dict[str, Any]) -> dict[str, Any] | None:
    """The application's own bootstrap inside one we installed (or ``bootstrap`` itself)."""
    marker = bootstrap.get(_MARKER_KEY)
    if not isinstance(marker, dict):
        return bootstrap
    base = marker.get("base")
    return dict(base) if isinstance(base, dict) else None


def read_bootstrap(env: Mapping[str, str]) -> tuple[str, Any]:
    """The bootstrap grpc would read from ``env``, and where it came from (``("", None)``: none).

    The file named by ``GRPC_XDS_BOOTSTRAP`` wins over ``GRPC_XDS_BOOTSTRAP_CONFIG``, as in grpc.
    ``ValueError`` for a file that cannot be read or for JSON that does not parse.
    """
    path = env.get(ENV_FILE, "")
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                return f"{ENV_FILE}={path}", json.load(f)
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read the xDS bootstrap {ENV_FILE}={path}: {exc}") from exc
    text = env.get(ENV_CONFIG, "")
    if not text:
        return "", None
    try:
        return ENV_CONFIG, json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{ENV_CONFIG} is not valid JSON: {exc}") from exc


def _current() -> dict[str, Any] | None:
    raw = _raw_current()
    return None if raw is None else _base_of(raw)


def install_bootstrap(uri: str) -> dict[str, Any]:
    """Publish a bootstrap that routes authority ``kuberesolver`` to ``uri``. Returns it."""
    existing = _current()
    if existing is None:
        bootstrap = own_bootstrap(uri)
    else:
        bootstrap = merge_bootstrap(existing, uri)
        log.info(
            "merged kuberesolver's xDS authority %r into the process's existing xDS bootstrap",
            AUTHORITY,
        )
    if os.environ.pop(ENV_FILE, None) is not None:
        log.info("replaced %s by the merged bootstrap in %s", ENV_FILE, ENV_CONFIG)
    # grpc ignores unknown top-level fields; this one lets a later install (a
    # restart, or a child process that inherited the variable) find the base.
    bootstrap[_MARKER_KEY] = {"pid": os.getpid(), "base": existing}
    os.environ[ENV_CONFIG] = json.dumps(bootstrap, sort_keys=True)
    return bootstrap


def add_authority(name: str, entry: dict[str, Any]) -> dict[str, Any]:
    """Publish the process's bootstrap with the authority ``name`` (``entry``) added: for
    ``source="operator"`` when no bootstrap names the operator. Returns it.

    A bootstrap we installed gets it in its base too, so a later
    :func:`install_bootstrap` keeps it. With no bootstrap at all, ``entry``'s
    servers are also the top-level ones (grpc requires some).
    """
    raw = _raw_current()
    bootstrap: dict[str, Any] = (
        dict(raw) if raw is not None else {"node": {"id": f"{_MARK}-{os.getpid()}"}}
    )
    bootstrap["authorities"] = {**(bootstrap.get("authorities") or {}), name: entry}
    if not bootstrap.get("xds_servers"):
        bootstrap["xds_servers"] = entry["xds_servers"]
    marker = bootstrap.get(_MARKER_KEY)
    if isinstance(marker, dict):
        base: dict[str, Any] = dict(marker.get("base") or {"node": bootstrap.get("node", {})})
        base["authorities"] = {**(base.get("authorities") or {}), name: entry}
        if not base.get("xds_servers"):
            base["xds_servers"] = entry["xds_servers"]
        bootstrap[_MARKER_KEY] = {**marker, "base": base}
    if os.environ.pop(ENV_FILE, None) is not None:
        log.info("replaced %s by the merged bootstrap in %s", ENV_FILE, ENV_CONFIG)
    os.environ[ENV_CONFIG] = json.dumps(bootstrap, sort_keys=True)
    return bootstrap


def _raw_current() -> dict[str, Any] | None:
    """The bootstrap grpc would read now, as it is (``_current`` gives its base)."""
    _, loaded = read_bootstrap(os.environ)
    return None if loaded is None else dict(loaded)
