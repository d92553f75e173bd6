"""Small helpers over the kubernetes client: apply manifests, mint tokens, print tables."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import yaml
from kubernetes import client, config, dynamic
from kubernetes.dynamic.exceptions import ResourceNotFoundError

from testenv.wait import until

FIELD_MANAGER = "kuberesolver-testenv"


def api_client(kubeconfig: Path) -> client.ApiClient:
    """A fresh ApiClient for one kubeconfig (never the process-wide default)."""
    api: client.ApiClient = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    return api


def admin_session(kubeconfig: Path) -> Iterator[client.ApiClient]:
    """Yield an :func:`api_client` and close it after (``yield from`` it in a fixture)."""
    api = api_client(kubeconfig)
    try:
        yield api
    finally:
        api.close()  # type: ignore[no-untyped-call]


def create_namespace(api: client.ApiClient, name: str) -> str:
    """Create Namespace ``name`` and wait for its default ServiceAccount (pods need it).

    kube-controller-manager makes the ServiceAccount. After API server restarts
    (several tests restart it), its informers relist with client-go's backoff,
    up to 30 s plus as much jitter: the wait allows for that.
    """
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    until(
        lambda: core.read_namespaced_service_account("default", name),
        timeout_s=90,
        message=f"the default ServiceAccount in {name}",
    )
    return name


def documents(*paths: Path) -> Iterator[dict[str, Any]]:
    """Every non-empty YAML document in ``paths`` (files or directories, sorted)."""
    for path in paths:
        files = sorted(path.glob("*.yaml")) if path.is_dir() else [path]
        for f in files:
            for doc in yaml.safe_load_all(f.read_text()):
                if doc:
                    yield doc


def apply(api: client.ApiClient, *paths: Path, namespace: str | None = None) -> list[str]:
    """Server-side apply every document; CRDs first, waiting until they are served."""
    docs = list(documents(*paths))
    crds = [d for d in docs if d["kind"] == "CustomResourceDefinition"]
    rest = [d for d in docs if d["kind"] != "CustomResourceDefinition"]
    applied = [apply_object(api, d, namespace) for d in crds]
    for d in crds:
        wait_crd_established(api, d["metadata"]["name"])
    applied += [apply_object(api, d, namespace) for d in rest]
    return applied


def apply_cluster_rbac(api: client.ApiClient, path: Path) -> list[str]:
    """Server-side apply only the ClusterRoles and ClusterRoleBindings of ``path`` (e.g. the
    operator's extra grants in a component of manifests/optional/, without the rest)."""
    kinds = ("ClusterRole", "ClusterRoleBinding")
    return [apply_object(api, d) for d in documents(path) if d["kind"] in kinds]


def apply_object(api: client.ApiClient, obj: dict[str, Any], namespace: str | None = None) -> str:
    """Server-side apply one object; returns ``kind/name``."""
    resource = until(
        lambda: _resource(api, obj["apiVersion"], obj["kind"]),
        timeout_s=30,
        message=f"{obj['apiVersion']} {obj['kind']} to be served",
    )
    ns = obj["metadata"].get("namespace") or (namespace if resource.namespaced else None)
    if ns and resource.namespaced:
        obj = {**obj, "metadata": {**obj["metadata"], "namespace": ns}}
    resource.server_side_apply(
        body=obj,
        name=obj["metadata"]["name"],
        namespace=ns,
        field_manager=FIELD_MANAGER,
        force_conflicts=True,
    )
    return f"{obj['kind']}/{obj['metadata']['name']}"


def _resource(api: client.ApiClient, api_version: str, kind: str) -> Any:
    try:
        dyn = dynamic.DynamicClient(api)  # type: ignore[no-untyped-call]
        return dyn.resources.get(api_version=api_version, kind=kind)
    except ResourceNotFoundError as exc:
        raise LookupError(f"{api_version} {kind} is not served yet") from exc


def wait_crd_established(api: client.ApiClient, name: str, timeout_s: float = 30) -> None:
    ext = client.ApiextensionsV1Api(api)

    def established() -> bool:
        crd = ext.read_custom_resource_definition(name)
        conds = (crd.status.conditions if crd.status else None) or []
        if not any(c.type == "Established" and c.status == "True" for c in conds):
            raise LookupError(f"CRD {name} not established")
        return True

    until(established, timeout_s=timeout_s, message=f"CRD {name} to be established")


def service_account_token(
    api: client.ApiClient, namespace: str, name: str, expiration_s: int = 86400
) -> str:
    """A bound token for a ServiceAccount, from the TokenRequest API."""
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=expiration_s)
    )
    response = client.CoreV1Api(api).create_namespaced_service_account_token(
        name, namespace, request
    )
    assert response.status is not None
    return str(response.status.token)


def table(api: client.ApiClient, path: str) -> str:
    """``kubectl get``-style text, rendered from the apiserver's own Table (printer columns)."""
    method, url, headers, _, _ = api.param_serialize(
        "GET",
        path,
        header_params={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"},
        auth_settings=["BearerToken"],
    )
    response = api.call_api(method, url, header_params=headers)
    response.read()  # type: ignore[no-untyped-call]
    data: dict[str, Any] = json.loads(cast(bytes, response.data))
    index = [i for i, c in enumerate(data["columnDefinitions"]) if c.get("priority", 0) == 0]
    rows = [[data["columnDefinitions"][i]["name"].upper() for i in index]]
    for r in data["rows"]:
        rows.append(["" if r["cells"][i] is None else str(r["cells"][i]) for i in index])
    widths = [max(len(row[i]) for row in rows) for i in range(len(index))]
    return "\n".join(
        "   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )
