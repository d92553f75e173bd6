"""The GrpcTarget custom resource: payload types, and parsing into a validated :class:`TargetSpec`.

The CRD's OpenAPI schema already refuses most bad input; this module checks
what a schema cannot (reserved template keys, the ConfigMap key syntax) and
applies the defaults, so the rest of the operator deals with one typed value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, NotRequired, TypedDict, cast

from kuberesolver.core.names import DNS1123_LABEL, is_dns1123_subdomain
from kuberesolver.core.policies import LB_POLICIES, LoadBalancing
from kuberesolver.core.service_config import OutlierDetection, outlier_detection
from kuberesolver.core.snapshot import ENDPOINTS_KEY, SERVICE_CONFIG_KEY

__all__ = [
    "ALLOWED_NAMESPACES_ANNOTATION",
    "GROUP",
    "KIND",
    "PLURAL",
    "VERSION",
    "ConditionDict",
    "GrpcTargetSpecDict",
    "GrpcTargetStatusDict",
    "SpecError",
    "TargetSpec",
    "parse_spec",
    "plain",
]

GROUP: Final = "kuberesolver.io"
VERSION: Final = "v1alpha1"
PLURAL: Final = "grpctargets"
KIND: Final = "GrpcTarget"

ALLOWED_NAMESPACES_ANNOTATION: Final = "kuberesolver.io/allowed-namespaces"
"""On a Service: the GrpcTarget namespaces (comma-separated, or ``*``) allowed to publish it."""

AddressFamily = Literal["IPv4", "IPv6", ""]

_FAMILIES: Final = ("", "IPv4", "IPv6")
_CONFIGMAP_KEY: Final = re.compile(r"^[-._a-zA-Z0-9]+$")


class GrpcTargetSpecDict(TypedDict):
    service: str
    serviceNamespace: NotRequired[str]
    port: NotRequired[int | str]
    configMapName: NotRequired[str]
    loadBalancing: NotRequired[LoadBalancing]
    includeTerminating: NotRequired[bool]
    addressFamily: NotRequired[AddressFamily]
    serviceConfig: NotRequired[dict[str, Any]]
    outlierDetection: NotRequired[dict[str, Any]]
    templates: NotRequired[dict[str, str]]


class ConditionDict(TypedDict):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str
    lastTransitionTime: str
    observedGeneration: int


class GrpcTargetStatusDict(TypedDict, total=False):
    observedGeneration: int
    readyEndpoints: int
    totalEndpoints: int
    revision: int
    configMapName: str
    lastUpdateTime: str
    conditions: list[ConditionDict]


class SpecError(ValueError):
    """A GrpcTarget spec that cannot be acted on; the message is meant for its author."""


@dataclass(frozen=True, slots=True)
class TargetSpec:
    """A validated GrpcTarget spec with its defaults applied."""

    name: str
    namespace: str
    service: str
    service_namespace: str
    port: int | str = ""
    configmap_name: str = ""
    load_balancing: LoadBalancing = "round_robin"
    include_terminating: bool = False
    address_family: AddressFamily = ""
    service_config: Mapping[str, Any] = field(default_factory=dict)
    templates: Mapping[str, str] = field(default_factory=dict)
    outlier_detection: OutlierDetection | None = None
    """gRFC A50 settings with our small defaults filled in; ``None``: off."""

    @property
    def cross_namespace(self) -> bool:
        return self.service_namespace != self.namespace

    @property
    def service_key(self) -> tuple[str, str]:
        return (self.service_namespace, self.service)


def parse_spec(name: str, namespace: str, spec: Mapping[str, Any]) -> TargetSpec:
    """Validate ``spec`` of the GrpcTarget ``namespace/name``; raise :class:`SpecError`."""
    service = spec.get("service")
    if not isinstance(service, str) or not DNS1123_LABEL.match(service):
        raise SpecError(f"spec.service must be a Service name, got {service!r}")
    service_ns = spec.get("serviceNamespace") or namespace
    if not isinstance(service_ns, str) or not DNS1123_LABEL.match(service_ns):
        raise SpecError(f"spec.serviceNamespace must be a namespace name, got {service_ns!r}")
    port = _port(spec.get("port"))
    cm_name = spec.get("configMapName") or name
    if not isinstance(cm_name, str) or not is_dns1123_subdomain(cm_name):
        raise SpecError(
            f"spec.configMapName must be a DNS subdomain (a ConfigMap name), got {cm_name!r}"
        )
    lb = spec.get("loadBalancing") or "round_robin"
    if lb not in LB_POLICIES:
        raise SpecError(f"spec.loadBalancing must be one of {', '.join(LB_POLICIES)}, got {lb!r}")
    family = spec.get("addressFamily") or ""
    if family not in _FAMILIES:
        raise SpecError(f"spec.addressFamily must be IPv4, IPv6 or empty, got {family!r}")
    include_terminating = spec.get("includeTerminating", False)
    if not isinstance(include_terminating, bool):
        raise SpecError(
            f"spec.includeTerminating must be true or false, got {include_terminating!r}"
        )
    service_config = spec.get("serviceConfig") or {}
    if not isinstance(service_config, Mapping):
        raise SpecError("spec.serviceConfig must be an object")
    lbc = service_config.get("loadBalancingConfig")
    if lbc is not None and (
        not isinstance(lbc, list | tuple)
        or not lbc
        or not all(isinstance(x, Mapping) and len(x) == 1 for x in lbc)
    ):
        raise SpecError(
            "spec.serviceConfig.loadBalancingConfig must be a list of objects, each naming "
            "one policy (e.g. [{round_robin: {}}])"
        )
    od = spec.get("outlierDetection")
    try:
        od_settings = None if od is None else outlier_detection(plain(od), "spec.outlierDetection")
    except ValueError as exc:
        raise SpecError(str(exc)) from None
    templates = spec.get("templates") or {}
    if not isinstance(templates, Mapping):
        raise SpecError("spec.templates must be a map of ConfigMap key to template")
    for key, source in templates.items():
        if (
            not isinstance(key, str)
            or not _CONFIGMAP_KEY.match(key)
            or len(key) > 253
            or key == "."
            or key.startswith("..")
        ):
            raise SpecError(
                f"spec.templates key {key!r} is not a valid ConfigMap key "
                "(letters, digits, '-', '_' and '.', at most 253, not '.' or '..')"
            )
        if key in (ENDPOINTS_KEY, SERVICE_CONFIG_KEY):
            raise SpecError(f"spec.templates key {key!r} is reserved for the operator's own output")
        if not isinstance(source, str):
            raise SpecError(f"spec.templates[{key!r}] must be a string")
    return TargetSpec(
        name=name,
        namespace=namespace,
        service=service,
        service_namespace=service_ns,
        port=port,
        configmap_name=cm_name,
        load_balancing=cast(LoadBalancing, lb),
        include_terminating=include_terminating,
        address_family=cast(AddressFamily, family),
        service_config=plain(service_config),
        templates=dict(templates),
        outlier_detection=od_settings,
    )


def _port(value: object) -> int | str:
    if value is None or value == "":
        return ""
    if isinstance(value, bool):
        raise SpecError(f"spec.port must be a port name or number, got {value!r}")
    if isinstance(value, int):
        if not 1 <= value <= 65535:
            raise SpecError(f"spec.port must be in 1..65535, got {value}")
        return value
    if isinstance(value, str):
        if value.isdigit():
            return _port(int(value))
        if len(value) <= 15 and DNS1123_LABEL.match(value):
            return value
    raise SpecError(f"spec.port must be a port name or number, got {value!r}")


def plain(value: Any) -> Any:
    """A deep plain-dict/list copy (kopf hands out read-only mapping views)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value
