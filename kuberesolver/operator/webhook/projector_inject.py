"""The projector sidecar for targets of a headless Service: what the mounts webhook adds.

A plain ConfigMap mount lags kubelet's refresh (60-90 s). A ClusterIP Service
rides that out on the ClusterIP fallback; a headless one has no ClusterIP, so
its calls fail once every listed Pod is gone. For such a target the webhook
mounts an ``emptyDir`` at the same path instead, written by the projector
(``kuberesolver-projector``, image ``KUBERESOLVER_PROJECTOR_IMAGE``) in
kubelet's atomic layout within a second of each ConfigMap change. It runs as a
native sidecar (an init container with ``restartPolicy: Always``, Kubernetes
1.29+) whose startup probe waits for the first projection, so the app starts
with the snapshot in place, as with a ConfigMap mount.

The sidecar reads the ConfigMap as the Pod's ServiceAccount: it needs get,
list and watch on it (``manifests/examples/projector-rbac.yaml``). A container
added by a webhook gets no token from the apiserver (its ServiceAccount
admission has run before), so the sidecar mounts the Pod's own token volume
when a container has one, else a projected token of its own.

Without a projector image the plain mount stays, with a warning naming the
headless Service. Pure: :func:`choose_delivery` decides, :func:`sidecar` and
:func:`api_access` build what :func:`~.admission.inject` adds.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final

from kuberesolver.core.endpointslices import ServiceView
from kuberesolver.core.names import quoted

if TYPE_CHECKING:
    from kuberesolver.operator.webhook.admission import Mount

__all__ = [
    "API_ACCESS_VOLUME",
    "PULL_POLICIES",
    "SA_DIR",
    "ProjectorImage",
    "api_access",
    "choose_delivery",
    "is_headless",
    "projector_image",
    "sidecar",
    "sidecars_of",
]

ENV_IMAGE: Final = "KUBERESOLVER_PROJECTOR_IMAGE"
ENV_PULL_POLICY: Final = "KUBERESOLVER_PROJECTOR_IMAGE_PULL_POLICY"
PULL_POLICIES: Final = ("Always", "IfNotPresent", "Never")
SA_DIR: Final = "/var/run/secrets/kubernetes.io/serviceaccount"
"""Where in-cluster credentials are read (the projector's too)."""
API_ACCESS_VOLUME: Final = "kuberesolver-api-access"
"""The sidecar's own token volume, when no container of the Pod mounts one."""
TOKEN_EXPIRATION_S: Final = 3607
"""As the apiserver's own ``kube-api-access`` volume: kubelet renews it at 80 %."""


@dataclass(frozen=True, slots=True)
class ProjectorImage:
    """The projector sidecar's image and pull policy."""

    image: str
    pull_policy: str = "IfNotPresent"


def projector_image(env: Mapping[str, str] | None = None) -> ProjectorImage | None:
    """``KUBERESOLVER_PROJECTOR_IMAGE`` (``None`` when unset or empty) and
    ``KUBERESOLVER_PROJECTOR_IMAGE_PULL_POLICY`` (default ``IfNotPresent``);
    ``ValueError`` for a pull policy Kubernetes does not know or an image with spaces."""
    e = os.environ if env is None else env
    image = e.get(ENV_IMAGE, "").strip()
    policy = e.get(ENV_PULL_POLICY, "").strip() or "IfNotPresent"
    if policy not in PULL_POLICIES:
        raise ValueError(f"{ENV_PULL_POLICY}={policy!r} is not one of {', '.join(PULL_POLICIES)}")
    if not image:
        return None
    if any(c.isspace() for c in image) or not image.isprintable():
        raise ValueError(f"{ENV_IMAGE}={image!r} is not an image reference")
    return ProjectorImage(image, policy)


def is_headless(service: ServiceView | None) -> bool | None:
    """Whether ``service`` has no ClusterIP (``spec.clusterIP: None``); ``None`` when unknown."""
    return None if service is None else not service.get("clusterIPs")


def choose_delivery(
    mounts: Sequence[Mount],
    headless: Callable[[str, str], bool | None],
    image: ProjectorImage | None,
) -> tuple[list[Mount], list[str]]:
    """Each mount as it stays or with the projector: ``headless(namespace, service)`` says
    whether a target's Service is known to have no ClusterIP (``None``: not known, the plain
    mount stays). Headless without ``image``: the plain mount, and one warning per Service."""
    chosen: list[Mount] = []
    warnings: list[str] = []
    for mount in mounts:
        if not headless(mount.service_namespace, mount.service):
            chosen.append(mount)
        elif image is not None:
            chosen.append(replace(mount, projector=image))
        else:
            chosen.append(mount)
            warnings.append(
                f"Service {mount.service}.{mount.service_namespace} (GrpcTarget "
                f"{quoted(mount.target)}) is headless: no ClusterIP to fall back on, and no "
                f"projector image is configured ({ENV_IMAGE}); its ConfigMap is mounted as "
                "is, and calls may fail during rollouts while kubelet's copy lags (60-90 s)"
            )
    return chosen, warnings


def sidecar(mount: Mount, namespace: str, token_volume: str) -> dict[str, Any]:
    """The native sidecar that projects ``mount``'s ConfigMap (of ``namespace``) into its
    ``emptyDir`` at the path the client reads; credentials from ``token_volume``."""
    assert mount.projector is not None, "a mount without the projector has no sidecar"
    args = [f"--namespace={namespace}", f"--configmap={mount.configmap}", f"--dir={mount.path}"]
    return {
        "name": mount.volume,
        "image": mount.projector.image,
        "imagePullPolicy": mount.projector.pull_policy,
        "restartPolicy": "Always",
        "command": ["kuberesolver-projector", *args],
        # The app starts once the first projection is there (as with a ConfigMap volume).
        "startupProbe": {
            "exec": {"command": ["kuberesolver-projector", *args, "--check"]},
            "periodSeconds": 1,
            "failureThreshold": 600,
        },
        "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [
            {"name": mount.volume, "mountPath": mount.path},
            {"name": token_volume, "mountPath": SA_DIR, "readOnly": True},
        ],
    }


def api_access(pod: Mapping[str, Any]) -> tuple[str, dict[str, Any] | None]:
    """The token volume for the sidecar: the one a container of ``pod`` mounts at
    :data:`SA_DIR` (the apiserver's ``kube-api-access-*``), else :data:`API_ACCESS_VOLUME`
    and that volume to add (``None`` when the Pod already has it)."""
    spec = pod.get("spec") or {}
    volumes = {v.get("name") for v in spec.get("volumes") or [] if isinstance(v, Mapping)}
    for container in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
        if not isinstance(container, Mapping):
            continue
        for vm in container.get("volumeMounts") or []:
            name = vm.get("name")
            if vm.get("mountPath", "").rstrip("/") == SA_DIR and name in volumes:
                return str(name), None
    if API_ACCESS_VOLUME in volumes:
        return API_ACCESS_VOLUME, None
    token = {"expirationSeconds": TOKEN_EXPIRATION_S, "path": "token"}
    ca = {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}
    namespace = {"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}
    sources = [
        {"serviceAccountToken": token},
        {"configMap": ca},
        {"downwardAPI": {"items": [namespace]}},
    ]
    return API_ACCESS_VOLUME, {"name": API_ACCESS_VOLUME, "projected": {"sources": sources}}


def sidecars_of(mounts: Sequence[Mount]) -> list[Mount]:
    """The mounts delivered by the projector."""
    return [m for m in mounts if m.projector is not None]
