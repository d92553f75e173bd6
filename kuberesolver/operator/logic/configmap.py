"""The ConfigMap a GrpcTarget publishes: a pure builder and the ownership rules.

The ConfigMap holds ``endpoints.json`` (the snapshot contract),
``service-config.json`` and the target's rendered template keys. It is
labelled, and owned by its GrpcTarget (``controller: true``), so the garbage
collector removes it with the GrpcTarget and no finalizer is needed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from kuberesolver.core.snapshot import (
    ENDPOINTS_KEY,
    SERVICE_CONFIG_KEY,
    EncodedEndpoints,
    Snapshot,
    encode,
)
from kuberesolver.operator.logic.render import check_size, dumps
from kuberesolver.operator.logic.spec import GROUP, KIND, VERSION, TargetSpec

__all__ = [
    "MANAGED_BY",
    "MANAGED_BY_LABEL",
    "TARGET_LABEL",
    "build_configmap",
    "build_data",
    "controller_uid",
    "is_owned_by",
]

MANAGED_BY_LABEL: Final = "app.kubernetes.io/managed-by"
MANAGED_BY: Final = "kuberesolver"
TARGET_LABEL: Final = "kuberesolver.io/target"


def build_data(
    snapshot: Snapshot, rendered: Mapping[str, str], encoded: EncodedEndpoints | None = None
) -> dict[str, str]:
    """The ConfigMap's ``data``; raises :class:`RenderError` when it is too large.

    ``encoded``: the target's endpoints already encoded (see :func:`.snapshot.encode`).
    """
    data = dict(rendered)
    data[ENDPOINTS_KEY] = encode(snapshot, encoded)
    data[SERVICE_CONFIG_KEY] = dumps(dict(snapshot.service_config))
    check_size(data)
    return data


def build_configmap(target: TargetSpec, uid: str, data: Mapping[str, str]) -> dict[str, Any]:
    """The whole ConfigMap object for ``target`` (the GrpcTarget with ``uid``)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": target.configmap_name,
            "namespace": target.namespace,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY, TARGET_LABEL: _label_value(target.name)},
            "ownerReferences": [
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": KIND,
                    "name": target.name,
                    "uid": uid,
                    "controller": True,
                    "blockOwnerDeletion": False,
                }
            ],
        },
        "data": dict(data),
    }


def controller_uid(configmap: Mapping[str, Any]) -> str | None:
    """The uid of the ConfigMap's controlling owner, if any."""
    for ref in (configmap.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("uid") or "") or None
    return None


def is_owned_by(configmap: Mapping[str, Any], uid: str) -> bool:
    """Whether the ConfigMap is controlled by the GrpcTarget with ``uid``."""
    return controller_uid(configmap) == uid


def _label_value(name: str) -> str:
    # A label value is at most 63 characters; GrpcTarget names may be longer.
    return name if len(name) <= 63 else name[:63].rstrip("-.")
