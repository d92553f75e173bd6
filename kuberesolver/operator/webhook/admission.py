"""Mounts injected by annotation: a mutating admission webhook for Pods (kopf's admission).

A Pod labelled ``kuberesolver.io/inject: "true"`` (the webhook's objectSelector,
so other Pods never reach it) and annotated
``kuberesolver.io/targets: "greeter,inventory"`` (GrpcTargets in its namespace)
gets, per target, one read-only ConfigMap volume mounted in every container at
``/var/run/kuberesolver/<service>.<namespace>``, never with ``subPath``
(subPath mounts are never updated). Nothing else changes. An unknown target
leaves the Pod unchanged, with a warning in the admission response.

The webhook is off unless ``KUBERESOLVER_WEBHOOK_PORT`` is set; it listens on
``KUBERESOLVER_WEBHOOK_ADDR`` (default all interfaces). TLS (:mod:`.tls`):
by default the operator manages it itself (a CA and a serving certificate in
Secret ``kuberesolver-webhook-tls``, rotated by the Lease leader, its CA bundle
patched into the MutatingWebhookConfiguration); with
``KUBERESOLVER_WEBHOOK_CERT_DIR`` it serves the files there (e.g. issued by
cert-manager). Either way a renewed certificate is served without a restart.
The MutatingWebhookConfiguration itself is static (manifests/webhook.yaml,
``failurePolicy: Ignore``, a short timeout): kopf's managed configuration is
rewritten by every replica and removed on shutdown. Both replicas serve
admission; GrpcTargets are read from the API, not from an index (a standby
replica's indexes are paused).

:func:`plan_mounts` and :func:`inject` are pure; the handler only reads the
GrpcTargets and hands kopf the transformation.

The same handler injects the xDS bootstrap into a Pod annotated
``kuberesolver.io/xds: "true"`` (:mod:`.xds_inject`: the environment variable,
and under TLS the projected token and CA), when this operator serves xDS.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import shutil
import ssl
import tempfile
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import kopf

from kuberesolver.operator.runtime.kube import Kube
from kuberesolver.operator.webhook.tls import (
    CertKeeper,
    ReloadingServer,
    TlsSettings,
    TlsSettingsError,
    placeholder,
    write_pair,
)
from kuberesolver.operator.webhook.xds_inject import (
    XDS_ANNOTATION,
    InjectSettings,
    XdsPlan,
    inject_xds,
    plan_xds,
    wants_xds,
)

__all__ = [
    "INJECT_LABEL",
    "MOUNT_ROOT",
    "TARGETS_ANNOTATION",
    "WEBHOOK_ID",
    "XDS_ANNOTATION",
    "Mount",
    "inject",
    "parse_targets",
    "plan_mounts",
    "register",
    "webhook_port",
]

TARGETS_ANNOTATION: Final = "kuberesolver.io/targets"
INJECT_LABEL: Final = "kuberesolver.io/inject"
MOUNT_ROOT: Final = "/var/run/kuberesolver"
"""The client's default snapshot root (``kuberesolver.client.settings.DEFAULT_SNAPSHOT_DIR``)."""
WEBHOOK_ID: Final = "mounts.kuberesolver.io"
"""The handler id: the webhook's URL path is ``/<id>``."""

_log = logging.getLogger("kuberesolver.operator.webhook")


@dataclass(frozen=True, slots=True)
class Mount:
    """One GrpcTarget's ConfigMap, as a volume and where it is mounted."""

    volume: str
    configmap: str
    path: str


def parse_targets(annotation: str) -> list[str]:
    """``"greeter, inventory"`` -> ``["greeter", "inventory"]`` (order kept, duplicates once)."""
    names: list[str] = []
    for part in annotation.split(","):
        name = part.strip()
        if name and name not in names:
            names.append(name)
    return names


def plan_mounts(
    namespace: str, names: Sequence[str], targets: Mapping[str, Mapping[str, Any] | None]
) -> tuple[list[Mount], list[str]]:
    """The mounts for ``names`` (GrpcTarget objects in ``targets``), or none and warnings.

    Any unknown or unusable target means no mount at all: a Pod gets all it
    asked for or stays as it was.
    """
    mounts: list[Mount] = []
    warnings: list[str] = []
    for name in names:
        target = targets.get(name)
        if target is None:
            warnings.append(
                f"{TARGETS_ANNOTATION}: no GrpcTarget {name!r} in namespace {namespace!r}; "
                "the Pod is left unchanged"
            )
            continue
        spec = target.get("spec") or {}
        service = spec.get("service")
        if not isinstance(service, str) or not service:
            warnings.append(f"GrpcTarget {name!r} has no spec.service; the Pod is left unchanged")
            continue
        service_ns = spec.get("serviceNamespace") or namespace
        mounts.append(
            Mount(
                volume=f"kuberesolver-{name}"[:63].rstrip("-"),
                configmap=str(spec.get("configMapName") or name),
                path=f"{MOUNT_ROOT}/{service}.{service_ns}",
            )
        )
    return ([] if warnings else mounts), warnings


def inject(pod: MutableMapping[str, Any], mounts: Sequence[Mount]) -> None:
    """Add each mount's volume and a read-only mount in every container (idempotent)."""
    spec = pod.setdefault("spec", {})
    volumes = spec.setdefault("volumes", [])
    taken = {v.get("name") for v in volumes}
    for m in mounts:
        if m.volume not in taken:
            volumes.append({"name": m.volume, "configMap": {"name": m.configmap}})
    for container in spec.get("containers") or []:
        existing = container.setdefault("volumeMounts", [])
        paths = {vm.get("mountPath") for vm in existing}
        for m in mounts:
            if m.path not in paths:
                existing.append({"name": m.volume, "mountPath": m.path, "readOnly": True})


def _transform(
    mounts: Sequence[Mount], xds: XdsPlan | None, body: MutableMapping[str, Any]
) -> None:
    inject(body, mounts)
    if xds is not None:
        inject_xds(body, xds)


def webhook_port() -> int:
    """``KUBERESOLVER_WEBHOOK_PORT``, 0 (the default) when the webhook is off."""
    raw = os.environ.get("KUBERESOLVER_WEBHOOK_PORT", "").strip() or "0"
    try:
        port = int(raw)
    except ValueError:
        raise ValueError(f"KUBERESOLVER_WEBHOOK_PORT={raw!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"KUBERESOLVER_WEBHOOK_PORT={port} is not a port number")
    return port


async def webhook_startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Serve admission over TLS on ``KUBERESOLVER_WEBHOOK_PORT``, the certificate kept current."""
    port = webhook_port()
    try:
        tls = TlsSettings.from_env()
    except TlsSettingsError as exc:
        raise kopf.PermanentError(f"bad setting: {exc}") from exc
    kube = memo["webhook_kube"] = Kube(workers=2)

    def leading() -> bool:
        runtime = memo.get("runtime")  # handlers.py's Runtime, which holds the Lease
        return bool(runtime is not None and runtime.leading())

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    keeper = CertKeeper(tls, kube if tls.mode == "self" else None, leading, context)
    # kopf loads a certificate file into the context when its server starts: give it a
    # throwaway one that never changes (a changed file makes kopf restart the server);
    # the keeper loads the real one right after (ReloadingServer).
    boot = memo["webhook_boot_dir"] = tempfile.mkdtemp(prefix="kuberesolver-webhook-")
    certfile, pkeyfile = write_pair(Path(boot), placeholder(tls.names))
    server = kopf.WebhookServer(
        addr=os.environ.get("KUBERESOLVER_WEBHOOK_ADDR") or None,
        port=port,
        context=context,
        certfile=str(certfile),
        pkeyfile=str(pkeyfile),
    )
    settings.admission.server = ReloadingServer(server, keeper)
    settings.admission.managed = None  # a static MutatingWebhookConfiguration (see above)
    memo["webhook_keeper"] = keeper
    memo["webhook_xds"] = InjectSettings.from_env()
    memo["webhook_tls_task"] = asyncio.create_task(keeper.run(), name="kuberesolver-webhook-tls")
    _log.info("admission webhook %s on port %d, TLS: %s", WEBHOOK_ID, port, tls.mode)


async def webhook_cleanup(memo: kopf.Memo, **_: Any) -> None:
    task: asyncio.Task[None] | None = memo.get("webhook_tls_task")
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    kube: Kube | None = memo.get("webhook_kube")
    if kube is not None:
        kube.close()
    boot: str | None = memo.get("webhook_boot_dir")
    if boot is not None:
        shutil.rmtree(boot, ignore_errors=True)


async def pod_mutate(
    body: kopf.Body, patch: kopf.Patch, warnings: list[str], memo: kopf.Memo, **_: Any
) -> None:
    namespace = body.metadata.namespace or ""
    annotations = body.metadata.annotations
    names = parse_targets(str(annotations.get(TARGETS_ANNOTATION, "")))
    kube: Kube | None = memo.get("webhook_kube")
    mounts: list[Mount] = []
    if names and kube is not None:
        targets = {name: await kube.get_grpctarget(namespace, name) for name in names}
        mounts, problems = plan_mounts(namespace, names, targets)
        warnings.extend(problems)
    xds, problems = _plan_xds(body, namespace, memo.get("webhook_xds"))
    warnings.extend(problems)
    if mounts or xds is not None:
        patch.fns.append(functools.partial(_transform, mounts, xds))


def _plan_xds(
    body: kopf.Body, namespace: str, settings: InjectSettings | None
) -> tuple[XdsPlan | None, list[str]]:
    wanted, problems = wants_xds(body.metadata.annotations)
    if not wanted:
        return None, problems
    try:
        config = (settings or InjectSettings.from_env()).injection()
    except ValueError as exc:
        _log.warning("%s: no xDS bootstrap for a Pod in %s: %s", XDS_ANNOTATION, namespace, exc)
        return None, [f"{XDS_ANNOTATION}: no xDS bootstrap added: {exc}"]
    return plan_xds(body, namespace, config)


def register() -> None:
    """Register the webhook's handlers with kopf (kopf refuses admission handlers without
    a server, so only when the webhook is on)."""
    kopf.on.startup()(webhook_startup)
    kopf.on.cleanup()(webhook_cleanup)
    kopf.on.mutate(
        "pods",
        id=WEBHOOK_ID,
        operation="CREATE",
        labels={INJECT_LABEL: "true"},
        ignore_failures=True,
        persistent=True,
    )(pod_mutate)


if webhook_port():
    register()
