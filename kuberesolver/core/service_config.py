"""The gRPC service config parts that kuberesolver applies through xDS, read once for everyone.

Pure standard library, shared by the snapshot contract, the operator (which
validates a GrpcTarget with it) and the client's xDS builders:

- ``methodConfig``: per-method ``timeout`` and ``retryPolicy`` become
  :class:`MethodRule` values, most specific first (``/service/method``, then
  ``/service/``, then the default), as grpc matches them;
- outlier detection (gRFC A50) as :class:`OutlierDetection`, read from the
  snapshot's ``outlierDetection`` object (A50's JSON form) with defaults small
  enough to eject on small services.

What xDS cannot carry (``waitForReady``, message size limits, hedging, a
``backoffMultiplier`` other than 2, status codes grpc's xDS retries ignore) is
named by :func:`unapplied_parts`, for the client's warning.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "APPLIED_KEYS",
    "OUTLIER_DEFAULTS",
    "TIMEOUT_NOT_APPLIED",
    "FailurePercentage",
    "MethodRule",
    "OutlierDetection",
    "RetryRule",
    "SuccessRate",
    "format_duration",
    "method_rules",
    "outlier_detection",
    "parse_duration_ns",
    "unapplied_parts",
]

APPLIED_KEYS: Final = frozenset({"loadBalancingConfig", "loadBalancingPolicy", "methodConfig"})
"""Top-level service config keys the client translates into xDS."""

XDS_RETRY_CODES: Final[Mapping[str, int]] = {
    "CANCELLED": 1,
    "DEADLINE_EXCEEDED": 4,
    "RESOURCE_EXHAUSTED": 8,
    "INTERNAL": 13,
    "UNAVAILABLE": 14,
}
"""The status codes grpc's xDS ``retry_on`` understands (gRFC A44), by name and number."""

_CODE_NAMES: Final = (
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
)

_DURATION: Final = re.compile(r"^(\d{1,12})(?:\.(\d{1,9}))?s$")
_NS: Final = 1_000_000_000
_MS: Final = 1_000_000
_MAX_SECONDS: Final = 315_576_000_000  # google.protobuf.Duration's range (10,000 years)
_METHOD_KEYS: Final = frozenset({"name", "timeout", "retryPolicy"})
_RETRY_KEYS: Final = frozenset(
    {"maxAttempts", "initialBackoff", "maxBackoff", "backoffMultiplier", "retryableStatusCodes"}
)


def parse_duration_ns(value: object) -> int:
    """A protobuf JSON duration (``"1.5s"``) in nanoseconds; ``ValueError`` if malformed."""
    match = _DURATION.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"must be a duration like '1.5s', got {value!r}")
    seconds, fraction = match.groups()
    if int(seconds) > _MAX_SECONDS:
        raise ValueError(f"must be at most {_MAX_SECONDS}s (protobuf's limit), got {value!r}")
    return int(seconds) * _NS + int((fraction or "").ljust(9, "0"))


def format_duration(ns: int) -> str:
    """The JSON form of ``ns`` nanoseconds: ``1500000000`` -> ``"1.5s"``."""
    seconds, rest = divmod(ns, _NS)
    return f"{seconds}.{rest:09d}".rstrip("0").rstrip(".") + "s" if rest else f"{seconds}s"


@dataclass(frozen=True, slots=True)
class RetryRule:
    """A ``retryPolicy`` in the terms of xDS's route ``retry_policy``."""

    max_attempts: int
    initial_backoff_ns: int
    max_backoff_ns: int
    retry_on: tuple[str, ...]
    """Lower-case dashed status names (``"resource-exhausted"``), as xDS spells them."""


@dataclass(frozen=True, slots=True)
class MethodRule:
    """What one ``methodConfig`` name asks for: ``service`` and ``method`` empty = the default."""

    service: str
    method: str
    timeout_ns: int | None = None
    retry: RetryRule | None = None

    @property
    def path(self) -> str:
        """The ``:path`` this rule matches exactly (``""`` for a prefix rule)."""
        return f"/{self.service}/{self.method}" if self.method else ""

    @property
    def prefix(self) -> str:
        """The ``:path`` prefix this rule matches (``""`` for every path)."""
        return f"/{self.service}/" if self.service else ""


def _code(value: object) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and 0 <= value < len(_CODE_NAMES):
        return _CODE_NAMES[value]
    if isinstance(value, str) and value.upper() in _CODE_NAMES:
        return value.upper()
    return None


def _retry(policy: object, where: str, problems: list[str]) -> RetryRule | None:
    if not isinstance(policy, Mapping):
        problems.append(f"{where} must be an object")
        return None
    problems.extend(f"{where}.{k}" for k in sorted(set(policy) - _RETRY_KEYS))
    attempts = policy.get("maxAttempts")
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 2:
        problems.append(f"{where}.maxAttempts must be an integer of at least 2 (ignored)")
        return None
    try:
        initial = parse_duration_ns(policy.get("initialBackoff"))
        maximum = parse_duration_ns(policy.get("maxBackoff"))
    except ValueError as exc:
        problems.append(f"{where}: initialBackoff and maxBackoff {exc} (ignored)")
        return None
    if initial <= 0 or maximum <= 0:
        problems.append(f"{where}: initialBackoff and maxBackoff must be above 0s (ignored)")
        return None
    multiplier = policy.get("backoffMultiplier", 2)
    if multiplier != 2:
        problems.append(f"{where}.backoffMultiplier {multiplier!r} (xDS always uses 2)")
    codes = policy.get("retryableStatusCodes")
    if not isinstance(codes, Sequence) or isinstance(codes, str) or not codes:
        problems.append(f"{where}.retryableStatusCodes must be a non-empty list (ignored)")
        return None
    retry_on: list[str] = []
    for raw in codes:
        name = _code(raw)
        if name is None or name not in XDS_RETRY_CODES:
            problems.append(
                f"{where}.retryableStatusCodes {raw!r} (xDS retries only on "
                f"{', '.join(XDS_RETRY_CODES)})"
            )
            continue
        dashed = name.lower().replace("_", "-")
        if dashed not in retry_on:
            retry_on.append(dashed)
    if not retry_on:
        return None
    # grpc turns the xDS backoff back into a service config in whole milliseconds, and
    # refuses a 0 there (every call then fails): below 1 ms is served as 1 ms
    initial, maximum = max(initial, _MS), max(maximum, _MS)
    return RetryRule(
        max_attempts=min(attempts, 5),  # grpc caps maxAttempts at 5
        initial_backoff_ns=initial,
        max_backoff_ns=max(maximum, initial),
        retry_on=tuple(retry_on),
    )


def _names(names: object, where: str, problems: list[str]) -> list[tuple[str, str]]:
    if not isinstance(names, Sequence) or isinstance(names, str) or not names:
        problems.append(f"{where}.name must be a non-empty list (entry ignored)")
        return []
    out: list[tuple[str, str]] = []
    for j, name in enumerate(names):
        service = name.get("service", "") if isinstance(name, Mapping) else None
        method = name.get("method", "") if isinstance(name, Mapping) else None
        if not isinstance(service, str) or not isinstance(method, str) or (method and not service):
            problems.append(f"{where}.name[{j}] must be {{service[, method]}} or {{}} (ignored)")
            continue
        out.append((service, method))
    return out


def _method_rules(service_config: Mapping[str, Any]) -> tuple[list[MethodRule], list[str]]:
    configs = service_config.get("methodConfig", [])
    problems: list[str] = []
    if not isinstance(configs, Sequence) or isinstance(configs, str):
        return [], ["methodConfig must be a list (ignored)"]
    rules: dict[tuple[str, str], MethodRule] = {}
    for i, entry in enumerate(configs):
        where = f"methodConfig[{i}]"
        if not isinstance(entry, Mapping):
            problems.append(f"{where} must be an object (ignored)")
            continue
        problems.extend(f"{where}.{k}" for k in sorted(set(entry) - _METHOD_KEYS))
        timeout: int | None = None
        if "timeout" in entry:
            try:
                timeout = parse_duration_ns(entry["timeout"])
            except ValueError as exc:
                problems.append(f"{where}.timeout {exc} (ignored)")
            if timeout == 0:
                timeout = None
            elif timeout is not None:  # grpc keeps whole milliseconds: 0 would mean none
                timeout = max(timeout, _MS)
        retry = (
            _retry(entry["retryPolicy"], f"{where}.retryPolicy", problems)
            if ("retryPolicy" in entry)
            else None
        )
        for key in _names(entry.get("name"), where, problems):
            if key in rules:
                shown = f"/{key[0]}/{key[1]}" if key[0] else "the default"
                problems.append(f"{where} names {shown} again (ignored)")
                continue
            rules[key] = MethodRule(key[0], key[1], timeout, retry)
    # grpc's order: /service/method, then /service/, then the default
    ordered = sorted(rules.values(), key=lambda r: (not r.method, not r.service))
    return ordered, problems


def method_rules(service_config: Mapping[str, Any]) -> list[MethodRule]:
    """The ``methodConfig`` rules grpc would match, most specific first; bad entries skipped."""
    return _method_rules(service_config)[0]


TIMEOUT_NOT_APPLIED: Final = (
    "timeout (grpcio ends such calls 1-2 s early, grpc/grpc#34547: set it on the call)"
)


def unapplied_parts(service_config: Mapping[str, Any], timeouts: bool = True) -> list[str]:
    """What of ``service_config`` the client does not apply: unknown keys, then problems.

    ``timeouts=False``: ``methodConfig`` timeouts are not served either (grpcio's case).
    """
    keys = sorted(set(service_config) - APPLIED_KEYS)
    problems = _method_rules(service_config)[1]
    if not timeouts:
        configs = service_config.get("methodConfig")
        if isinstance(configs, Sequence) and not isinstance(configs, str):
            problems += [
                f"methodConfig[{i}].{TIMEOUT_NOT_APPLIED}"
                for i, entry in enumerate(configs)
                if isinstance(entry, Mapping) and "timeout" in entry
            ]
    return keys + problems


# -- outlier detection (gRFC A50) ---------------------------------------------


@dataclass(frozen=True, slots=True)
class SuccessRate:
    stdev_factor: int = 1900
    enforcement_percentage: int = 100
    minimum_hosts: int = 2
    request_volume: int = 10


@dataclass(frozen=True, slots=True)
class FailurePercentage:
    threshold: int = 85
    enforcement_percentage: int = 100
    minimum_hosts: int = 2
    request_volume: int = 10


@dataclass(frozen=True, slots=True)
class OutlierDetection:
    """gRFC A50's settings; the defaults are ours, small enough for a 2-endpoint service."""

    interval_ns: int = _NS
    base_ejection_time_ns: int = 30 * _NS
    max_ejection_time_ns: int = 300 * _NS
    max_ejection_percent: int = 50
    success_rate: SuccessRate | None = None
    failure_percentage: FailurePercentage | None = FailurePercentage()

    def to_dict(self) -> dict[str, Any]:
        """A50's JSON form, every field explicit."""
        doc: dict[str, Any] = {
            "interval": format_duration(self.interval_ns),
            "baseEjectionTime": format_duration(self.base_ejection_time_ns),
            "maxEjectionTime": format_duration(self.max_ejection_time_ns),
            "maxEjectionPercent": self.max_ejection_percent,
        }
        if self.success_rate is not None:
            s = self.success_rate
            doc["successRateEjection"] = {
                "stdevFactor": s.stdev_factor,
                "enforcementPercentage": s.enforcement_percentage,
                "minimumHosts": s.minimum_hosts,
                "requestVolume": s.request_volume,
            }
        if self.failure_percentage is not None:
            f = self.failure_percentage
            doc["failurePercentageEjection"] = {
                "threshold": f.threshold,
                "enforcementPercentage": f.enforcement_percentage,
                "minimumHosts": f.minimum_hosts,
                "requestVolume": f.request_volume,
            }
        return doc


OUTLIER_DEFAULTS: Final = OutlierDetection()
"""Failure-percentage ejection (85% of at least 10 calls, 2 hosts), checked every second."""


def _count(d: Mapping[str, Any], key: str, where: str, default: int, top: int | None) -> int:
    value = d.get(key, default)
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < 0
        or (top is not None and value > top)
        or value >= 2**32
    ):
        bound = f"0..{top}" if top is not None else "a non-negative integer"
        raise ValueError(f"{where}.{key} must be {bound}, got {value!r}")
    return value


def _object(value: object, where: str, keys: frozenset[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{where} must be an object, got {value!r}")
    unknown = sorted(set(value) - keys)
    if unknown:
        raise ValueError(f"{where} has unknown keys {', '.join(map(repr, unknown))}")
    return value


def _positive_duration(d: Mapping[str, Any], key: str, where: str, default: int) -> int:
    if key not in d:
        return default
    try:
        ns = parse_duration_ns(d[key])
    except ValueError as exc:
        raise ValueError(f"{where}.{key} {exc}") from None
    if ns <= 0:
        raise ValueError(f"{where}.{key} must be above 0s")
    return ns


_OD_KEYS: Final = frozenset(
    {
        "interval",
        "baseEjectionTime",
        "maxEjectionTime",
        "maxEjectionPercent",
        "successRateEjection",
        "failurePercentageEjection",
    }
)
_SR_KEYS: Final = frozenset(
    {"stdevFactor", "enforcementPercentage", "minimumHosts", "requestVolume"}
)
_FP_KEYS: Final = frozenset({"threshold", "enforcementPercentage", "minimumHosts", "requestVolume"})


def outlier_detection(value: object, where: str = "outlierDetection") -> OutlierDetection:
    """Validate A50's JSON form and fill our defaults; ``ValueError`` names the bad field.

    With neither ``successRateEjection`` nor ``failurePercentageEjection``,
    failure-percentage ejection is on with its defaults (``{}`` turns the
    defaults on); naming either turns on just the ones named.
    """
    d = _object(value, where, _OD_KEYS)
    base = OUTLIER_DEFAULTS
    success: SuccessRate | None = None
    failure: FailurePercentage | None = None
    if "successRateEjection" in d:
        w = f"{where}.successRateEjection"
        s = _object(d["successRateEjection"], w, _SR_KEYS)
        dflt = SuccessRate()
        success = SuccessRate(
            stdev_factor=_count(s, "stdevFactor", w, dflt.stdev_factor, None),
            enforcement_percentage=_count(
                s, "enforcementPercentage", w, dflt.enforcement_percentage, 100
            ),
            minimum_hosts=_count(s, "minimumHosts", w, dflt.minimum_hosts, None),
            request_volume=_count(s, "requestVolume", w, dflt.request_volume, None),
        )
    if "failurePercentageEjection" in d or "successRateEjection" not in d:
        w = f"{where}.failurePercentageEjection"
        f = _object(d.get("failurePercentageEjection", {}), w, _FP_KEYS)
        dflf = FailurePercentage()
        failure = FailurePercentage(
            threshold=_count(f, "threshold", w, dflf.threshold, 100),
            enforcement_percentage=_count(
                f, "enforcementPercentage", w, dflf.enforcement_percentage, 100
            ),
            minimum_hosts=_count(f, "minimumHosts", w, dflf.minimum_hosts, None),
            request_volume=_count(f, "requestVolume", w, dflf.request_volume, None),
        )
    return OutlierDetection(
        interval_ns=_positive_duration(d, "interval", where, base.interval_ns),
        base_ejection_time_ns=_positive_duration(
            d, "baseEjectionTime", where, base.base_ejection_time_ns
        ),
        max_ejection_time_ns=_positive_duration(
            d, "maxEjectionTime", where, base.max_ejection_time_ns
        ),
        max_ejection_percent=_count(d, "maxEjectionPercent", where, base.max_ejection_percent, 100),
        success_rate=success,
        failure_percentage=failure,
    )
