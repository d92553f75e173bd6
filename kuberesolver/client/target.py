"""Parsing ``kubernetes:`` targets: every form sercand/kuberesolver accepts, and custom schemes.

Accepted forms (``ns`` defaults to the pod's own namespace, then ``default``;
the port is a number or a port name, and may be left out to mean the port the
snapshot was made for)::

    kubernetes:///svc:8080            kubernetes:///svc:grpc
    kubernetes:///svc.ns:8080         kubernetes:///svc.ns.svc.cluster.local:8080
    kubernetes:///svc.ns.svc.cluster.local
    kubernetes://ns/svc:8080          kubernetes://svc:8080/
    kubernetes://svc.ns:8080/         kubernetes://svc.ns.svc.cluster.local:8080

:func:`register_scheme` adds another scheme (``register_scheme("k8s")``) in one call.
Malformed targets raise :class:`ValueError` naming the part at fault.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from typing import Final

from kuberesolver.client.settings import default_namespace
from kuberesolver.core.names import DOMAIN_LABEL, is_dns1035_label, is_dns1123_label, is_port_name

__all__ = ["DEFAULT_SCHEME", "ParsedTarget", "parse_target", "register_scheme", "schemes"]

DEFAULT_SCHEME: Final = "kubernetes"

_schemes: set[str] = {DEFAULT_SCHEME}
_lock = threading.Lock()

_SCHEME_RE: Final = re.compile(r"^[a-z][a-z0-9+.-]*$")


@dataclass(frozen=True, slots=True)
class ParsedTarget:
    """A parsed target: which Service port of which namespace."""

    scheme: str
    service: str
    namespace: str
    port: str
    """A port number or name as text; ``""`` means the snapshot's own port."""
    namespace_explicit: bool = True

    @property
    def server_name(self) -> str:
        """``service.namespace``: the default TLS name and ``:authority``."""
        return f"{self.service}.{self.namespace}"

    def __str__(self) -> str:
        port = f":{self.port}" if self.port else ""
        return f"{self.scheme}:///{self.service}.{self.namespace}{port}"


def register_scheme(scheme: str) -> None:
    """Accept ``<scheme>://`` targets as well as ``kubernetes://``. Idempotent."""
    normalized = scheme.strip().lower().removesuffix("://").removesuffix(":")
    if not _SCHEME_RE.match(normalized):
        raise ValueError(f"invalid scheme {scheme!r}: use letters, digits, '+', '-' or '.'")
    if normalized in ("dns", "ipv4", "ipv6", "unix", "unix-abstract", "xds", "vsock"):
        raise ValueError(f"scheme {normalized!r} belongs to grpc; choose another name")
    with _lock:
        _schemes.add(normalized)


def schemes() -> frozenset[str]:
    """The schemes accepted now."""
    with _lock:
        return frozenset(_schemes)


def _fail(target: str, problem: str) -> ValueError:
    return ValueError(f"invalid kuberesolver target {target!r}: {problem}")


def parse_target(
    target: str,
    *,
    namespace: str | None = None,
    namespace_file: str | os.PathLike[str] | None = None,
) -> ParsedTarget:
    """Parse ``target``; ``namespace`` (or the pod's own) fills in a missing namespace."""
    if not isinstance(target, str):
        raise TypeError(f"target must be a string, got {type(target).__name__}")
    scheme, sep, rest = target.partition("://")
    if not sep:
        raise _fail(target, "missing scheme: expected 'kubernetes:///service[.namespace][:port]'")
    scheme = scheme.lower()
    if scheme not in schemes():
        known = ", ".join(sorted(schemes()))
        raise _fail(
            target,
            f"scheme {scheme!r} is not registered (known: {known}; "
            "add one with kuberesolver.register_scheme)",
        )
    for bad, what in (("?", "query"), ("#", "fragment"), ("@", "user info")):
        if bad in rest:
            raise _fail(target, f"a {what} ({bad!r}) is not allowed")
    authority, _, path = rest.partition("/")
    if "/" in path:
        raise _fail(target, f"path {path!r} has more than one segment")
    auth_namespace: str | None = None
    if not authority:
        endpoint = path  # kubernetes:///svc...
        where = "path"
    elif not path:
        endpoint = authority  # kubernetes://svc:8080/ or kubernetes://svc.ns:8080
        where = "authority"
    else:
        auth_namespace = authority  # kubernetes://ns/svc:8080
        endpoint = path
        where = "path"
        if not is_dns1123_label(auth_namespace):
            raise _fail(target, f"namespace {auth_namespace!r} (the authority) is not a DNS label")
    if not endpoint:
        raise _fail(target, "missing service name")

    host, colon, port = endpoint.partition(":")
    if colon:
        if not port:
            raise _fail(target, f"empty port after ':' in the {where}")
        if ":" in port:
            raise _fail(target, f"port {port!r} contains ':'")
        _check_port(target, port)
    labels = host.split(".")
    service = labels[0]
    if not service:
        raise _fail(target, "missing service name")
    if not is_dns1035_label(service):
        raise _fail(
            target,
            f"service name {service!r} is not a DNS-1035 label "
            "(lowercase letters, digits and '-', starting with a letter, at most 63)",
        )
    ns: str | None = None
    if len(labels) >= 2:
        ns = labels[1]
        if not is_dns1123_label(ns):
            raise _fail(target, f"namespace {ns!r} is not a DNS label")
        if auth_namespace is not None and ns != auth_namespace:
            raise _fail(
                target, f"namespace {auth_namespace!r} (authority) and {ns!r} (host) disagree"
            )
    if len(labels) >= 3:
        if labels[2] != "svc":
            raise _fail(
                target,
                f"{'.'.join(labels[2:])!r} after the namespace must be 'svc' "
                "plus the cluster domain, as in svc.ns.svc.cluster.local",
            )
        for label in labels[3:]:
            if not DOMAIN_LABEL.match(label):
                raise _fail(target, f"cluster domain label {label!r} is not valid")
    resolved = ns or auth_namespace
    explicit = resolved is not None
    if resolved is None:
        resolved = namespace or default_namespace(namespace_file)
    return ParsedTarget(
        scheme=scheme,
        service=service,
        namespace=resolved,
        port=port,
        namespace_explicit=explicit,
    )


def _check_port(target: str, port: str) -> None:
    if port.isdigit():
        if not 1 <= int(port) <= 65535:
            raise _fail(target, f"port {port} is out of range 1..65535")
        return
    if not is_port_name(port):
        raise _fail(
            target,
            f"port {port!r} is neither a number nor a port name "
            "(lowercase letters, digits and '-', at most 15)",
        )
