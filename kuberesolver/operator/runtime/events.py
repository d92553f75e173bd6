"""Kubernetes Events about GrpcTargets, reported as ``kuberesolver`` (pure builder).

The operator posts its Events itself (only the leader does), rather than
through kopf, so ``kubectl describe gt`` shows them from ``kuberesolver``
with the replica's identity as the reporting instance.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any, Final, Literal

from kuberesolver.operator.logic.status import rfc3339
from kuberesolver.operator.runtime.leader import micro_time

__all__ = ["MAX_MESSAGE", "REPORTER", "build_event"]

REPORTER: Final = "kuberesolver"
MAX_MESSAGE: Final = 1024


def build_event(
    involved: Mapping[str, Any],
    type_: Literal["Normal", "Warning"],
    reason: str,
    message: str,
    *,
    instance: str,
    now: datetime.datetime,
    action: str = "Reconcile",
    count: int = 1,
) -> dict[str, Any]:
    """A ``v1`` Event about ``involved`` (an object with apiVersion, kind and metadata;
    without a uid, the Event names it by kind and name only)."""
    meta = involved.get("metadata") or {}
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 3] + "..."
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{REPORTER}-", "namespace": meta.get("namespace")},
        "involvedObject": {
            k: v
            for k, v in (
                ("apiVersion", involved.get("apiVersion")),
                ("kind", involved.get("kind")),
                ("name", meta.get("name")),
                ("namespace", meta.get("namespace")),
                ("uid", meta.get("uid")),
            )
            if v is not None
        },
        "type": type_,
        "reason": reason,
        "message": message,
        "action": action,
        "source": {"component": REPORTER},
        "reportingComponent": REPORTER,
        "reportingInstance": instance[:128],
        "firstTimestamp": rfc3339(now),
        "lastTimestamp": rfc3339(now),
        "eventTime": micro_time(now),
        "count": count,
    }
