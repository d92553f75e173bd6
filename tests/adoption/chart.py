"""Render the Helm chart and kustomize's manifests into objects, for the chart tests.

``helm template`` and ``kubectl kustomize`` run as a user types them
(:class:`~testenv.tools.UserShell`); the tests then assert on the parsed
objects, never on text.
"""

from __future__ import annotations

import copy
import json
import os
import shlex
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from testenv.tools import UserShell
from tests.adoption.conftest import ROOT

CHART = ROOT / "charts" / "kuberesolver"
MANIFESTS = ROOT / "manifests"
HELM_ONLY_LABELS = frozenset(
    {"app.kubernetes.io/version", "app.kubernetes.io/managed-by", "helm.sh/chart"}
)
Key = tuple[str, str, str]
"""(kind, namespace, name) of an object."""


def key(obj: Mapping[str, Any]) -> Key:
    meta = obj["metadata"]
    return (obj["kind"], meta.get("namespace", ""), meta["name"])


def helm_args(values: Mapping[str, Any]) -> str:
    """``--set``/``--set-string``/``--set-json`` flags for ``values`` (dotted keys)."""
    flags = []
    for name, value in values.items():
        if isinstance(value, bool):
            flags.append(f"--set {name}={str(value).lower()}")
        elif isinstance(value, int):
            flags.append(f"--set {name}={value}")
        elif isinstance(value, str):
            flags.append(f"--set-string {shlex.quote(f'{name}={value}')}")
        else:
            flags.append(f"--set-json {shlex.quote(f'{name}={json.dumps(value)}')}")
    return " ".join(flags)


def render(
    shell: UserShell,
    values: Mapping[str, Any] | None = None,
    release: str = "kuberesolver",
    namespace: str = "kuberesolver-system",
) -> list[dict[str, Any]]:
    """The objects ``helm template`` renders for ``values``."""
    out = shell.run(
        f"helm template {release} charts/kuberesolver --namespace {namespace}"
        f" {helm_args(values or {})}"
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def refused(shell: UserShell, values: Mapping[str, Any]) -> str:
    """``helm template``'s error for values it must refuse (it must fail)."""
    result = shell.run(
        f"helm template kuberesolver charts/kuberesolver {helm_args(values)}", check=False
    )
    assert result.returncode != 0, f"accepted: {values}\n{result}"
    return result.stderr


def kustomize(shell: UserShell, workdir: Path, *components: str) -> list[dict[str, Any]]:
    """``kubectl kustomize`` of manifests/ with ``components`` of manifests/optional/."""
    here = os.path.relpath(MANIFESTS, workdir)
    listed = ", ".join(f"{here}/optional/{c}" for c in components)
    (workdir / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources: [{here}]\ncomponents: [{listed}]\n"
    )
    out = shell.run(f"kubectl kustomize {workdir}").stdout
    return [d for d in yaml.safe_load_all(out) if d]


def one(objects: Iterable[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    """The one object of ``kind`` (and ``name``)."""
    found = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''}: {[key(o) for o in found]}"
    return found[0]


def container(objects: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The operator container of the one Deployment."""
    (c,) = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    return dict(c)


def env_of(objects: Iterable[dict[str, Any]]) -> dict[str, str]:
    """The operator's literal environment variables."""
    return {e["name"]: e["value"] for e in container(objects).get("env", []) if "value" in e}


def comparable(objects: Iterable[dict[str, Any]]) -> dict[Key, dict[str, Any]]:
    """Objects keyed by (kind, namespace, name), without Helm's own labels and with
    the container's named lists in name order (kustomize's patches reorder them)."""
    out: dict[Key, dict[str, Any]] = {}
    for obj in objects:
        obj = copy.deepcopy(obj)
        spec = obj.get("spec") or {}
        for meta in (obj["metadata"], (spec.get("template") or {}).get("metadata") or {}):
            labels = meta.get("labels") or {}
            for label in HELM_ONLY_LABELS & set(labels):
                del labels[label]
        pod = (spec.get("template") or {}).get("spec") or {}
        for c in pod.get("containers", []):
            for field in ("env", "ports", "volumeMounts"):
                if field in c:
                    c[field] = sorted(c[field], key=lambda e: e["name"])
        if "volumes" in pod:
            pod["volumes"] = sorted(pod["volumes"], key=lambda v: v["name"])
        out[key(obj)] = obj
    return out


# --- RBAC as grants -----------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Grant:
    """One verb on one resource, where it holds: ``scope`` is "cluster" or a namespace;
    ``name`` is a resourceName or "" for any."""

    scope: str
    group: str
    resource: str
    verb: str
    name: str = ""


def grants(objects: Sequence[dict[str, Any]], service_account: str, namespace: str) -> set[Grant]:
    """Every grant the rendered RBAC gives the ServiceAccount (roles bound to it only)."""
    roles = {(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]): o
             for o in objects if o["kind"] in ("Role", "ClusterRole")}  # fmt: skip
    out: set[Grant] = set()
    for binding in objects:
        if binding["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        subject = {"kind": "ServiceAccount", "name": service_account, "namespace": namespace}
        if subject not in binding["subjects"]:
            continue
        where = binding["metadata"].get("namespace", "")
        ref = binding["roleRef"]
        role = roles[(ref["kind"], where if ref["kind"] == "Role" else "", ref["name"])]
        scope = "cluster" if binding["kind"] == "ClusterRoleBinding" else where
        out.update(_flatten(role["rules"], scope))
    return out


def _flatten(rules: Iterable[Mapping[str, Any]], scope: str) -> Iterator[Grant]:
    for rule in rules:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    for name in rule.get("resourceNames") or [""]:
                        yield Grant(scope, group, resource, verb, name)
