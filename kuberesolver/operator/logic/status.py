"""Status conditions (Ready, ServiceFound, Rendered) and the status object of a GrpcTarget.

Pure: the caller passes ``now``. A condition keeps its ``lastTransitionTime``
while its status stays the same, as Kubernetes' own conventions ask.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from kuberesolver.operator.logic.spec import ConditionDict, GrpcTargetStatusDict

__all__ = [
    "CONDITION_TYPES",
    "Condition",
    "build_status",
    "condition",
    "merge_conditions",
    "rfc3339",
    "status_changed",
    "summary_only",
]

SUMMARY_FIELDS: Final = frozenset(
    {"readyEndpoints", "totalEndpoints", "revision", "lastUpdateTime"}
)
"""What moves with every endpoint change; the rest moves when the target's state does."""

CONDITION_TYPES: Final = ("Ready", "ServiceFound", "Rendered")

StatusWord = Literal["True", "False", "Unknown"]


@dataclass(frozen=True, slots=True)
class Condition:
    type: str
    status: StatusWord
    reason: str
    message: str = ""


def condition(type_: str, ok: bool | None, reason: str, message: str = "") -> Condition:
    word: StatusWord = "Unknown" if ok is None else ("True" if ok else "False")
    return Condition(type_, word, reason, message)


def rfc3339(now: datetime.datetime) -> str:
    return now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_conditions(
    old: Iterable[Mapping[str, Any]],
    new: Iterable[Condition],
    generation: int,
    now: datetime.datetime,
) -> list[ConditionDict]:
    """The new conditions, in :data:`CONDITION_TYPES` order, keeping unchanged transition times."""
    previous = {str(c.get("type")): c for c in old}
    out: list[ConditionDict] = []
    by_type = {c.type: c for c in new}
    for type_ in sorted(by_type, key=_order):
        c = by_type[type_]
        before = previous.get(type_)
        if (
            before is not None
            and before.get("status") == c.status
            and before.get("lastTransitionTime")
        ):
            since = str(before["lastTransitionTime"])
        else:
            since = rfc3339(now)
        out.append(
            {
                "type": c.type,
                "status": c.status,
                "reason": c.reason,
                "message": c.message,
                "lastTransitionTime": since,
                "observedGeneration": generation,
            }
        )
    return out


def _order(type_: str) -> tuple[int, str]:
    return (CONDITION_TYPES.index(type_) if type_ in CONDITION_TYPES else 99, type_)


def build_status(
    old: Mapping[str, Any],
    conditions: Iterable[Condition],
    *,
    generation: int,
    now: datetime.datetime,
    configmap_name: str,
    ready_endpoints: int | None,
    total_endpoints: int | None,
    revision: int | None,
    updated: bool,
) -> GrpcTargetStatusDict:
    """The whole status; counts and revision keep their old values when ``None``."""
    status: GrpcTargetStatusDict = {
        "observedGeneration": generation,
        "configMapName": configmap_name,
        "conditions": merge_conditions(old.get("conditions") or [], conditions, generation, now),
    }
    for key, value in (
        ("readyEndpoints", ready_endpoints),
        ("totalEndpoints", total_endpoints),
        ("revision", revision),
    ):
        if value is None:
            value = old.get(key)
        if value is not None:
            status[key] = int(value)  # type: ignore[literal-required]
    last = rfc3339(now) if updated else old.get("lastUpdateTime")
    if last:
        status["lastUpdateTime"] = str(last)
    return status


def status_changed(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether ``new`` says anything ``old`` does not (a patch is needed)."""
    return any(old.get(k) != v for k, v in new.items())


def summary_only(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether ``new`` differs from ``old`` only in its summary (it may wait a little).

    The summary: :data:`SUMMARY_FIELDS`, and the conditions' messages (which
    quote the counts). A condition's status or reason, the generation or the
    ConfigMap's name is never summary.
    """
    if _states(old.get("conditions")) != _states(new.get("conditions")):
        return False
    return all(
        old.get(k) == v for k, v in new.items() if k not in SUMMARY_FIELDS and k != "conditions"
    )


def _states(conditions: Any) -> list[tuple[Any, ...]]:
    return [
        (c.get("type"), c.get("status"), c.get("reason"), c.get("observedGeneration"))
        for c in conditions or []
        if isinstance(c, Mapping)
    ]
