"""Mounts injected by annotation: a mutating admission webhook for Pods (kopf's admission).

A Pod labelled ``kuberesolver.io/inject: "true"`` (the webhook's objectSelector,
so other Pods never reach it) and annotated
``kuberesolver.io/targets: "greeter,inventory"`` (GrpcTargets in its namespace)
gets, per target, one read-only ConfigMap volume mounted in every container at
``/var/run/kuberesolver/<service>.<namespace>``, never with ``subPath``
(subPath mounts are never updated). Nothing else changes. But a target whose
Service is headless (no ClusterIP to fall back on while kubelet's copy lags,
as this replica's watch of the Services says) gets an ``emptyDir`` there
instead, written by the projector in a native sidecar
(:mod:`.projector_inject`; without ``KUBERESOLVER_PROJECTOR_IMAGE``, the
ConfigMap volume and a warning naming the Service).

The annotation is tenant input. Every name must be a DNS-1123 subdomain (so
``otherns/secret`` or ``greeter/status`` never becomes an API path), and a Pod
may name at most :data:`MAX_TARGETS`; both are checked before anything is
looked up. An unknown target, a bad name, too many names, or GrpcTargets that
cannot be read within ``KUBERESOLVER_WEBHOOK_DEADLINE_MS`` (2000) leave the Pod
unchanged, with one warning in the admission response that names the problem:
never a denial (a 5xx or 422).

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
admission, each from its own watch of the GrpcTargets
(:class:`~kuberesolver.operator.runtime.informer.GrpcTargetIndex`, not kopf's
handlers, whose watches a peered standby pauses); a name the watch has not
seen costs one LIST of the Pod's namespace (a consistent read, so a GrpcTarget
created just before its Pod is found), never one request per name.

:func:`parse_targets`, :func:`plan_mounts`, :func:`conflicts` and :func:`inject`
(and :func:`.projector_inject.choose_delivery`) are pure; the handler only reads
the GrpcTargets (and, from memory, which Services are headless) and hands kopf
the transformation.

The same handler injects the xDS bootstrap into a Pod annotated
``kuberesolver.io/xds: "true"`` (:mod:`.xds_inject`: the environment variable,
and under TLS the projected token and CA), when this operator serves xDS.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import os
import re
import shutil
import ssl
import tempfile
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import kopf

from kuberesolver.core.names import (
    is_dns1035_label,
    is_dns1123_label,
    is_dns1123_subdomain,
    quoted,
)
from kuberesolver.kube.kubeconfig import load_client
from kuberesolver.operator.runtime.informer import (
    GrpcTargetIndex,
    LoopReflector,
    ServiceStore,
    grpctarget_reflectors,
)
from kuberesolver.operator.runtime.kube import ApiError, Kube
from kuberesolver.operator.runtime.metrics import Metrics, shared
from kuberesolver.operator.settings import Settings, SettingsError, watch_namespaces
from kuberesolver.operator.webhook.projector_inject import (
    ProjectorImage,
    api_access,
    choose_delivery,
    is_headless,
    projector_image,
    sidecar,
    sidecars_of,
)
from kuberesolver.operator.webhook.skip_reporter import SkipReporter
from kuberesolver.operator.webhook.skips import Problem, pod_label, reason_of
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
    "MAX_TARGETS",
    "MOUNT_ROOT",
    "TARGETS_ANNOTATION",
    "WEBHOOK_ID",
    "XDS_ANNOTATION",
    "Mount",
    "conflicts",
    "inject",
    "parse_targets",
    "plan_mounts",
    "register",
    "volume_name",
    "webhook_deadline_ms",
    "webhook_port",
]

TARGETS_ANNOTATION: Final = "kuberesolver.io/targets"
INJECT_LABEL: Final = "kuberesolver.io/inject"
MOUNT_ROOT: Final = "/var/run/kuberesolver"
"""The client's default snapshot root (``kuberesolver.client.settings.DEFAULT_SNAPSHOT_DIR``)."""
WEBHOOK_ID: Final = "mounts.kuberesolver.io"
"""The handler id: the webhook's URL path is ``/<id>``."""
MAX_TARGETS: Final = 32
"""The most GrpcTargets one Pod may name: more is refused (with a warning), not looked up."""
MAX_ANNOTATION_CHARS: Final = 16 * 1024
"""A longer annotation is refused unread: 32 names of 253 characters, spaced, fit in 9 KiB.
(Reading a 250 KB one cost 50 ms of the event loop that every admission shares.)"""
VOLUME_PREFIX: Final = "kuberesolver-"
DEFAULT_DEADLINE_MS: Final = 2000
NOTICE: Final = "notice"
"""The reason of a warning that comes with the injection (not a skip)."""

_log = logging.getLogger("kuberesolver.operator.webhook")


@dataclass(frozen=True, slots=True)
class Mount:
    """One GrpcTarget's ConfigMap, as a volume and where it is mounted: the ConfigMap
    itself, or (``projector`` set) an ``emptyDir`` the projector sidecar writes it into."""

    volume: str
    configmap: str
    path: str
    service: str = ""
    service_namespace: str = ""
    target: str = ""
    projector: ProjectorImage | None = None

    def volume_source(self) -> dict[str, Any]:
        """The volume as the Pod gets it."""
        if self.projector is not None:
            return {"name": self.volume, "emptyDir": {}}
        return {"name": self.volume, "configMap": {"name": self.configmap}}


def parse_targets(annotation: str) -> tuple[list[str], list[str]]:
    """The GrpcTarget names in ``annotation`` (order kept, duplicates once), or none and
    one warning: every name must be a DNS-1123 subdomain, and there may be at most
    :data:`MAX_TARGETS` of them. Nothing is looked up before this says yes.

    >>> parse_targets(" greeter, inventory,,greeter ")
    (['greeter', 'inventory'], [])
    >>> parse_targets("otherns/secret")[1]  # doctest: +ELLIPSIS
    ["kuberesolver.io/targets: 'otherns/secret' is not a GrpcTarget name ..."]
    """
    entries = annotation.count(",") + 1
    if len(annotation) > MAX_ANNOTATION_CHARS:  # not read: it cannot be a short list
        return [], [
            Problem(
                f"{TARGETS_ANNOTATION} is {len(annotation)} characters long ({entries} entries), "
                f"more than {MAX_TARGETS} GrpcTarget names need; the Pod is left unchanged",
                "too_many_names",
            )
        ]
    names: dict[str, None] = {}
    for part in annotation.split(","):
        name = part.strip()
        if name:
            names[name] = None
            if len(names) > MAX_TARGETS:
                return [], [
                    Problem(
                        f"{TARGETS_ANNOTATION} lists {entries} names, more than the "
                        f"{MAX_TARGETS} GrpcTargets allowed; the Pod is left unchanged",
                        "too_many_names",
                    )
                ]
    bad = [n for n in names if not is_dns1123_subdomain(n)]
    if not bad:
        return list(names), []
    shown = ", ".join(quoted(n) for n in bad[:3])
    more = f" (and {len(bad) - 3} more)" if len(bad) > 3 else ""
    return [], [
        Problem(
            f"{TARGETS_ANNOTATION}: {shown}{more} "
            f"{'is not a GrpcTarget name' if len(bad) == 1 else 'are not GrpcTarget names'} "
            "(a DNS-1123 subdomain: lower-case letters, digits, '-' and '.'); "
            "the Pod is left unchanged",
            "bad_annotation",
        )
    ]


def volume_name(target: str) -> str:
    """The volume of GrpcTarget ``target``: ``kuberesolver-<target>`` when that is a
    DNS-1123 label (a volume's name must be), else a label made from it and a hash of it.

    >>> volume_name("greeter"), volume_name("greeter.v2")
    ('kuberesolver-greeter', 'kuberesolver-greeter-v2-642d5b4b40')
    """
    simple = f"{VOLUME_PREFIX}{target}"
    if is_dns1123_label(simple):
        return simple
    digest = hashlib.sha256(target.encode("utf-8")).hexdigest()[:10]
    room = 63 - len(VOLUME_PREFIX) - len(digest) - 1
    stem = re.sub(r"[^a-z0-9-]+", "-", target.lower())[:room].strip("-")
    return f"{VOLUME_PREFIX}{stem}-{digest}" if stem else f"{VOLUME_PREFIX}{digest}"


def plan_mounts(
    namespace: str, names: Sequence[str], targets: Mapping[str, Mapping[str, Any] | None]
) -> tuple[list[Mount], list[str]]:
    """The mounts for ``names`` (GrpcTarget objects in ``targets``), or none and warnings.

    Any unknown or unusable target means no mount at all: a Pod gets all it
    asked for or stays as it was.
    """
    mounts: list[Mount] = []
    warnings: list[str] = []
    paths: dict[str, str] = {}
    for name in names:
        target = targets.get(name)
        if target is None:
            warnings.append(
                Problem(
                    f"{TARGETS_ANNOTATION}: no GrpcTarget {quoted(name)} in namespace "
                    f"{namespace!r}; the Pod is left unchanged",
                    "unknown_target",
                )
            )
            continue
        spec = target.get("spec") or {}
        service = spec.get("service")
        service_ns = spec.get("serviceNamespace") or namespace
        configmap = spec.get("configMapName") or name
        if not (
            isinstance(service, str)
            and is_dns1035_label(service)
            and isinstance(service_ns, str)
            and is_dns1123_label(service_ns)
            and isinstance(configmap, str)
            and is_dns1123_subdomain(configmap)
        ):
            warnings.append(
                Problem(
                    f"GrpcTarget {quoted(name)} has no usable spec.service, serviceNamespace "
                    "or configMapName; the Pod is left unchanged",
                    "unusable_target",
                )
            )
            continue
        path = f"{MOUNT_ROOT}/{service}.{service_ns}"
        if path in paths:
            warnings.append(
                Problem(
                    f"GrpcTargets {quoted(paths[path])} and {quoted(name)} both publish "
                    f"Service {service}.{service_ns} (one directory); the Pod is left unchanged",
                    "conflict",
                )
            )
            continue
        paths[path] = name
        mounts.append(Mount(volume_name(name), configmap, path, service, service_ns, name))
    return ([] if warnings else mounts), warnings


def conflicts(pod: Mapping[str, Any], mounts: Sequence[Mount]) -> list[str]:
    """Warnings for the Pod's own volumes, mounts or containers in the way of ``mounts`` (a
    Pod that already holds exactly ours, as on a re-invocation, is no conflict)."""
    spec = pod.get("spec") or {}
    volumes = {v.get("name"): v for v in spec.get("volumes") or [] if isinstance(v, Mapping)}
    containers = {
        c.get("name"): c
        for c in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]
        if isinstance(c, Mapping)
    }
    problems: list[str] = []
    for m in mounts:
        own = volumes.get(m.volume)
        if own is not None and not _same_volume(own, m.volume_source()):
            problems.append(
                Problem(
                    f"the Pod already has a volume {m.volume!r}; it is left unchanged", "conflict"
                )
            )
        theirs = containers.get(m.volume)
        if m.projector is not None and theirs is not None and not _is_sidecar(theirs, m):
            problems.append(
                Problem(
                    f"the Pod already has a container {m.volume!r}; it is left unchanged",
                    "conflict",
                )
            )
        for container in spec.get("containers") or []:
            for vm in container.get("volumeMounts") or []:
                if vm.get("mountPath") == m.path and vm.get("name") != m.volume:
                    problems.append(
                        Problem(
                            f"container {quoted(str(container.get('name', '')))} already "
                            f"mounts something at {m.path}; the Pod is left unchanged",
                            "conflict",
                        )
                    )
    return problems


def _same_volume(own: Mapping[str, Any], ours: Mapping[str, Any]) -> bool:
    if "configMap" in ours:
        return bool((own.get("configMap") or {}).get("name") == ours["configMap"]["name"])
    return own.get("emptyDir") is not None and "configMap" not in own


def _is_sidecar(container: Mapping[str, Any], mount: Mount) -> bool:
    """Whether ``container`` is the projector sidecar of ``mount`` (a re-invocation)."""
    command = container.get("command")
    return (
        isinstance(command, list)
        and command[:1] == ["kuberesolver-projector"]
        and f"--configmap={mount.configmap}" in command
        and f"--dir={mount.path}" in command
    )


def inject(pod: MutableMapping[str, Any], mounts: Sequence[Mount], namespace: str = "") -> None:
    """Add each mount's volume and a read-only mount in every container, and for a mount
    by the projector its sidecar (in ``namespace``, the Pod's) and token volume (idempotent)."""
    spec = pod.setdefault("spec", {})
    volumes = spec.setdefault("volumes", [])
    taken = {v.get("name") for v in volumes}
    for m in mounts:
        if m.volume not in taken:
            volumes.append(m.volume_source())
            taken.add(m.volume)
    _inject_sidecars(spec, pod, mounts, namespace)
    for container in spec.get("containers") or []:
        existing = container.setdefault("volumeMounts", [])
        paths = {vm.get("mountPath") for vm in existing}
        for m in mounts:
            if m.path not in paths:
                existing.append({"name": m.volume, "mountPath": m.path, "readOnly": True})
                paths.add(m.path)


def _inject_sidecars(
    spec: MutableMapping[str, Any],
    pod: Mapping[str, Any],
    mounts: Sequence[Mount],
    namespace: str,
) -> None:
    projected = sidecars_of(mounts)
    if not projected:
        return
    token_volume, token_source = api_access(pod)
    if token_source is not None:
        spec["volumes"].append(token_source)
    init = spec.setdefault("initContainers", [])
    present = {c.get("name") for c in init}
    for m in projected:
        if m.volume not in present:
            init.append(sidecar(m, namespace, token_volume))
            present.add(m.volume)


def _transform(
    mounts: Sequence[Mount], xds: XdsPlan | None, namespace: str, body: MutableMapping[str, Any]
) -> None:
    inject(body, mounts, namespace)
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


def webhook_deadline_ms() -> int:
    """``KUBERESOLVER_WEBHOOK_DEADLINE_MS`` (default :data:`DEFAULT_DEADLINE_MS`): how long
    one admission may take, well inside the configuration's ``timeoutSeconds`` (5 s)."""
    raw = os.environ.get("KUBERESOLVER_WEBHOOK_DEADLINE_MS", "").strip()
    try:
        value = int(raw) if raw else DEFAULT_DEADLINE_MS
    except ValueError:
        raise ValueError(f"KUBERESOLVER_WEBHOOK_DEADLINE_MS={raw!r} is not a number") from None
    if not 1 <= value <= 30_000:
        raise ValueError(f"KUBERESOLVER_WEBHOOK_DEADLINE_MS={value} is not in 1..30000")
    return value


async def webhook_startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Serve admission over TLS on ``KUBERESOLVER_WEBHOOK_PORT``, the certificate kept current."""
    port = webhook_port()
    try:
        tls = TlsSettings.from_env()
        deadline_ms = webhook_deadline_ms()
        namespaces = watch_namespaces()
        memo["webhook_projector"] = projector_image()
    except (TlsSettingsError, ValueError) as exc:
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
    memo["webhook_deadline_s"] = deadline_ms / 1000
    index = memo["webhook_targets"] = GrpcTargetIndex(namespaces)
    api, _namespace = load_client(pool_maxsize=2)
    reflectors = grpctarget_reflectors(api, index, asyncio.get_running_loop())
    memo["webhook_reflectors"], memo["webhook_api"] = reflectors, api
    for reflector in reflectors:
        reflector.start()
    memo["webhook_tls_task"] = asyncio.create_task(keeper.run(), name="kuberesolver-webhook-tls")
    shared(memo).follow_certificate(keeper.seconds_left)
    try:
        identity = Settings.resolve().identity
    except SettingsError:  # the operator's startup says what is wrong
        identity = WEBHOOK_ID
    reporter = memo["webhook_skips"] = SkipReporter(kube, identity)
    memo["webhook_skips_task"] = asyncio.create_task(
        reporter.run(), name="kuberesolver-webhook-skips"
    )
    _log.info("admission webhook %s on port %d, TLS: %s", WEBHOOK_ID, port, tls.mode)


async def webhook_cleanup(memo: kopf.Memo, **_: Any) -> None:
    reflectors: list[LoopReflector] = memo.get("webhook_reflectors") or []
    for reflector in reflectors:
        reflector.stop()
    api = memo.get("webhook_api")
    if api is not None:
        api.close()
    for name in ("webhook_tls_task", "webhook_skips_task"):
        task: asyncio.Task[None] | None = memo.get(name)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    reporter: SkipReporter | None = memo.get("webhook_skips")
    if reporter is not None:
        await reporter.close()
    kube: Kube | None = memo.get("webhook_kube")
    if kube is not None:
        kube.close()
    boot: str | None = memo.get("webhook_boot_dir")
    if boot is not None:
        shutil.rmtree(boot, ignore_errors=True)


async def pod_mutate(
    body: kopf.Body,
    patch: kopf.Patch,
    warnings: list[str],
    memo: kopf.Memo,
    dryrun: bool = False,
    **_: Any,
) -> None:
    """Never raises (an exception would deny the Pod with a 500): a Pod that cannot be
    served is admitted unchanged, with a warning that says why, and the same said in a
    log line, a metric and an Event (:mod:`.skips`; no Event for a dry run, as the
    configuration's ``sideEffects: NoneOnDryRun`` promises)."""
    started = asyncio.get_running_loop().time()
    namespace = body.metadata.namespace or ""
    failed = False
    deadline_s: float = memo.get("webhook_deadline_s") or DEFAULT_DEADLINE_MS / 1000
    mounts: list[Mount] = []
    xds: XdsPlan | None = None
    try:
        async with asyncio.timeout(deadline_s):
            mounts, problems = await _plan_mounts(body, namespace, memo, deadline_s)
        xds, more = _plan_xds(body, namespace, memo.get("webhook_xds"))
        problems += more
    except TimeoutError:
        problems = [
            Problem(
                f"{TARGETS_ANNOTATION}: the GrpcTargets could not be read within "
                f"{deadline_s * 1000:.0f} ms; the Pod is left unchanged",
                "deadline",
            )
        ]
    except Exception as exc:
        _log.exception("a Pod in %s is admitted unchanged", namespace)
        problems = [f"kuberesolver: the Pod is left unchanged ({type(exc).__name__})"]
        mounts, xds, failed = [], None, True
    warnings.extend(problems)
    if mounts or xds is not None:
        patch.fns.append(functools.partial(_transform, mounts, xds, namespace))
    metrics: Metrics | None = memo.get("metrics")
    # A notice comes with the mounts (the plain mount of a headless Service's target,
    # no projector image set): a warning, not a skipped injection.
    skipped = [p for p in problems if reason_of(p) != NOTICE]
    if skipped:
        _log.warning(
            "Pod %s/%s admitted without %s: %s",
            namespace,
            pod_label(body),
            "its xDS bootstrap" if reason_of(skipped[0]) == "xds" else "its mounts",
            "; ".join(skipped),
        )
        reporter: SkipReporter | None = memo.get("webhook_skips")
        if reporter is not None and not dryrun:
            reporter.report(body, namespace, skipped)
    if metrics is not None:
        if failed:
            metrics.admissions.labels("error", "").inc()
        elif skipped:
            metrics.skipped(reason_of(skipped[0]))
        else:
            outcome = "injected" if mounts or xds is not None else "unchanged"
            metrics.admissions.labels(outcome, "").inc()
        metrics.admission_seconds.observe(asyncio.get_running_loop().time() - started)


async def _plan_mounts(
    body: kopf.Body, namespace: str, memo: kopf.Memo, deadline_s: float
) -> tuple[list[Mount], list[str]]:
    """Names checked first; then the GrpcTargets from this replica's watch; only if some
    are not there (not yet seen, or unknown) one LIST of the namespace's GrpcTargets."""
    raw = body.metadata.annotations.get(TARGETS_ANNOTATION)
    names, problems = parse_targets(raw if isinstance(raw, str) else "")
    if problems or not names:
        return [], problems
    index: GrpcTargetIndex | None = memo.get("webhook_targets")
    if index is not None and not index.watches(namespace):
        # Namespaced mode: its GrpcTargets are neither watched nor readable (no Role there).
        _log.warning("a Pod in %s asks for GrpcTargets of a namespace not watched", namespace)
        return [], [
            Problem(
                f"{TARGETS_ANNOTATION}: namespace {namespace!r} is not watched by kuberesolver "
                f"(it watches {', '.join(index.namespaces)}); the Pod is left unchanged",
                "namespace_not_watched",
            )
        ]
    targets: dict[str, Mapping[str, Any] | None] = dict.fromkeys(names)
    if index is not None and index.synced.is_set():
        targets = {name: index.get(namespace, name) for name in names}
    missing = [name for name, target in targets.items() if target is None]
    kube: Kube | None = memo.get("webhook_kube")
    if missing and kube is not None:
        try:
            listed = await kube.list_grpctargets(namespace, timeout_s=deadline_s)
        except ApiError as exc:
            _log.warning("GrpcTargets in %s not read for a Pod: %s", namespace, exc)
            return [], [
                Problem(
                    f"{TARGETS_ANNOTATION}: the GrpcTargets of namespace {namespace!r} could "
                    f"not be read ({exc.status or 'no answer'}); the Pod is left unchanged",
                    "forbidden" if exc.status == 403 else "api_error",
                )
            ]
        by_name = {str((t.get("metadata") or {}).get("name")): t for t in listed}
        targets.update({name: by_name.get(name) for name in missing})
    mounts, problems = plan_mounts(namespace, names, targets)
    if problems:
        return [], problems
    mounts, notices = choose_delivery(mounts, _headless(memo), memo.get("webhook_projector"))
    problems = conflicts(body, mounts)
    return ([] if problems else mounts), problems or [Problem(n, NOTICE) for n in notices]


def _headless(memo: kopf.Memo) -> Callable[[str, str], bool | None]:
    """Whether a Service is headless, from this replica's own watch of the Services (the
    runtime's store; every replica keeps it): ``None`` while it is not known."""
    store = getattr(memo.get("runtime"), "store", None)

    def lookup(namespace: str, name: str) -> bool | None:
        if not isinstance(store, ServiceStore) or not store.synced("services"):
            return None
        return is_headless(store.lookup((namespace, name))[0])

    return lookup


def _plan_xds(
    body: kopf.Body, namespace: str, settings: InjectSettings | None
) -> tuple[XdsPlan | None, list[str]]:
    wanted, problems = wants_xds(body.metadata.annotations)
    if not wanted:
        return None, [Problem(p, "xds") for p in problems]
    try:
        config = (settings or InjectSettings.from_env()).injection()
    except ValueError as exc:
        _log.warning("%s: no xDS bootstrap for a Pod in %s: %s", XDS_ANNOTATION, namespace, exc)
        return None, [Problem(f"{XDS_ANNOTATION}: no xDS bootstrap added: {exc}", "xds")]
    plan, problems = plan_xds(body, namespace, config)
    return plan, [Problem(p, "xds") for p in problems]


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
