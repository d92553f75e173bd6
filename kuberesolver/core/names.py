"""Kubernetes name rules, defined once for the operator and the client (standard library only)."""

from __future__ import annotations

import re
from typing import Final

__all__ = [
    "DNS1035_LABEL",
    "DNS1123_LABEL",
    "DNS1123_SUBDOMAIN",
    "DOMAIN_LABEL",
    "is_dns1035_label",
    "is_dns1123_label",
    "is_dns1123_subdomain",
    "is_port_name",
]

DNS1123_LABEL: Final = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
"""A namespace (and most object names' label): lowercase alphanumerics and ``-``."""

DNS1035_LABEL: Final = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
"""A Service name: like a DNS-1123 label, but starting with a letter."""

DOMAIN_LABEL: Final = re.compile(r"^[a-z0-9]([-a-z0-9_]*[a-z0-9])?$")
"""One label of a cluster domain (``cluster.local``)."""

DNS1123_SUBDOMAIN: Final = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
"""An object name such as a ConfigMap's: dot-separated DNS-1123 labels."""

_MAX_LABEL: Final = 63
_MAX_SUBDOMAIN: Final = 253
_MAX_PORT_NAME: Final = 15


def is_dns1123_label(value: str) -> bool:
    return len(value) <= _MAX_LABEL and DNS1123_LABEL.match(value) is not None


def is_dns1123_subdomain(value: str) -> bool:
    return len(value) <= _MAX_SUBDOMAIN and DNS1123_SUBDOMAIN.match(value) is not None


def is_dns1035_label(value: str) -> bool:
    return len(value) <= _MAX_LABEL and DNS1035_LABEL.match(value) is not None


def is_port_name(value: str) -> bool:
    """An IANA service name, as Kubernetes port names are: 1-15 characters, a letter, no ``--``."""
    return (
        len(value) <= _MAX_PORT_NAME
        and DNS1123_LABEL.match(value) is not None
        and any(c.isalpha() for c in value)
        and "--" not in value
    )
