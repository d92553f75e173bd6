"""The load-balancing policies, defined once for the operator and the client.

Pure standard library: the operator validates ``spec.loadBalancing`` and
renders the service config from it; the client maps a policy (or a service
config) to the xDS policy it serves.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Literal, get_args

__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "LB_POLICIES",
    "PICK_FIRST",
    "ROUND_ROBIN",
    "WEIGHTED_ROUND_ROBIN",
    "LoadBalancing",
    "normalize_policy",
    "policy_from_service_config",
    "service_config_entry",
]

LoadBalancing = Literal["round_robin", "weighted_round_robin", "pick_first"]
"""A policy name as users write it in a GrpcTarget and as a channel asks for it."""

ROUND_ROBIN: Final = "round_robin"
WEIGHTED_ROUND_ROBIN: Final = "weighted_round_robin"
PICK_FIRST: Final = "pick_first"

DEFAULT_MAX_ATTEMPTS: Final = 3
"""Attempts per call (the first one included) on UNAVAILABLE, unless configured otherwise."""

LB_POLICIES: Final[tuple[LoadBalancing, ...]] = get_args(LoadBalancing)
"""Every policy, in order of preference. ``weighted_round_robin`` is load-aware (ORCA)."""

_ALIASES: Final[Mapping[str, LoadBalancing]] = {
    "round_robin": ROUND_ROBIN,
    "weighted_round_robin": WEIGHTED_ROUND_ROBIN,
    "wrr": WEIGHTED_ROUND_ROBIN,
    "least_request": WEIGHTED_ROUND_ROBIN,
    "least_request_experimental": WEIGHTED_ROUND_ROBIN,
    "pick_first": PICK_FIRST,
}


def normalize_policy(policy: str) -> LoadBalancing:
    """Map a policy name (and the aliases users reach for) to one of :data:`LB_POLICIES`."""
    try:
        return _ALIASES[policy.strip().lower()]
    except KeyError:
        raise ValueError(
            f"unknown load-balancing policy {policy!r}: use one of {', '.join(LB_POLICIES)}"
        ) from None


def policy_from_service_config(service_config: Mapping[str, Any]) -> LoadBalancing | None:
    """The first policy we know in a gRPC service config's ``loadBalancingConfig``."""
    configs = service_config.get("loadBalancingConfig")
    if isinstance(configs, list):
        for entry in configs:
            if isinstance(entry, Mapping):
                for key in entry:
                    if isinstance(key, str) and key in _ALIASES:
                        return _ALIASES[key]
    legacy = service_config.get("loadBalancingPolicy")
    if isinstance(legacy, str) and legacy.lower() in _ALIASES:
        return _ALIASES[legacy.lower()]
    return None


def service_config_entry(policy: LoadBalancing) -> dict[str, Any]:
    """The ``loadBalancingConfig`` entry for ``policy``: ``{"round_robin": {}}``."""
    return {policy: {}}
