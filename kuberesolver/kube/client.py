"""The Kubernetes API as direct mode needs it: GET a JSON object, stream a watch.

:class:`K8sClient` is the typed protocol (the Python twin of Go kuberesolver's
``K8sClient``); any object with these methods can be handed to
:class:`~kuberesolver.direct.Builder`. The two factories build one on the
``kubernetes`` client library (the ``[direct]`` extra), imported only when
called, so ``import kuberesolver`` never loads it:

- :func:`new_in_cluster_k8s_client`: the pod's ServiceAccount (token, CA and
  the ``KUBERNETES_SERVICE_HOST``/``PORT`` variables). The token file is
  re-read whenever it changes on disk (bound tokens rotate hourly) and after
  any 401.
- :func:`new_insecure_k8s_client`: plain HTTP to a proxy that adds the
  credentials itself, such as ``kubectl proxy``.
- :func:`new_kubeconfig_k8s_client`: out of cluster, a kubeconfig found as
  ``kubectl`` finds it: the ``kubeconfig`` argument, else ``$KUBECONFIG`` (a
  list of files, merged), else ``~/.kube/config``; its current context, or
  ``context``.
- :func:`new_k8s_client`: in-cluster in a Pod (and no kubeconfig named), else the
  kubeconfig: what :class:`~kuberesolver.direct.Builder` makes when given no client.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Iterator, Mapping
from typing import Any, Final, Protocol, runtime_checkable

__all__ = [
    "DEFAULT_CA_FILE",
    "DEFAULT_TOKEN_FILE",
    "ApiError",
    "K8sClient",
    "WatchStream",
    "json_object",
    "new_in_cluster_k8s_client",
    "new_insecure_k8s_client",
    "new_k8s_client",
    "new_kubeconfig_k8s_client",
]

DEFAULT_TOKEN_FILE: Final = "/var/run/secrets/kubernetes.io/serviceaccount/token"
DEFAULT_CA_FILE: Final = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"

_EXTRA_HINT: Final = "direct mode needs the kubernetes client: pip install 'kuberesolver[direct]'"


class ApiError(RuntimeError):
    """The API answered with an error status (or a watch ERROR event)."""

    def __init__(self, status: int, reason: str, path: str = "") -> None:
        where = f" for {path}" if path else ""
        super().__init__(f"Kubernetes API answered {status}{where}: {reason}")
        self.status = status
        self.reason = reason
        self.path = path


def json_object(body: bytes | str, path: str) -> dict[str, Any]:
    """The body of ``GET path`` as a JSON object; ``OSError`` (a broken answer) otherwise."""
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise OSError(f"GET {path}: not JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise OSError(f"GET {path}: not a JSON object")
    return doc


@runtime_checkable
class WatchStream(Protocol):
    """An open watch: iterate its events (decoded JSON objects); ``close()`` from any thread."""

    def __iter__(self) -> Iterator[Mapping[str, Any]]: ...

    def close(self) -> None: ...


@runtime_checkable
class K8sClient(Protocol):
    """What direct mode asks of the API: exactly the verbs of its Role.

    Errors are :class:`ApiError` (an answer with an error status) or
    ``OSError`` (no answer). ``timeout_s`` is a request's deadline, connecting
    and reading together, with no retry inside; for a watch, the longest silence.
    """

    @property
    def host(self) -> str:
        """The API server's base URL."""
        ...

    def get_service(
        self, namespace: str, name: str, *, timeout_s: float = 30.0
    ) -> Mapping[str, Any]:
        """``get services``: the Service object as JSON."""
        ...

    def list_endpoint_slices(
        self, namespace: str, service: str, *, timeout_s: float = 30.0
    ) -> Mapping[str, Any]:
        """``list endpointslices`` of one Service (label ``kubernetes.io/service-name``)."""
        ...

    def watch_endpoint_slices(
        self,
        namespace: str,
        service: str,
        resource_version: str,
        *,
        timeout_s: float = 30.0,
        server_timeout_s: int = 300,
    ) -> WatchStream:
        """``watch endpointslices`` of one Service from ``resource_version``, with bookmarks.

        The server ends the stream after ``server_timeout_s``; a stream silent
        for ``timeout_s`` ends in ``OSError``.
        """
        ...

    def close(self) -> None:
        """Release the connection pool. Idempotent."""
        ...


def new_in_cluster_k8s_client(
    *,
    host: str | None = None,
    token_file: str | os.PathLike[str] = DEFAULT_TOKEN_FILE,
    ca_file: str | os.PathLike[str] = DEFAULT_CA_FILE,
) -> K8sClient:
    """A client for the API server this pod runs under, as its ServiceAccount.

    ``host`` defaults to ``https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT``;
    the token and CA files default to the mounted ServiceAccount's.
    """
    if host is None:
        svc_host = os.environ.get("KUBERNETES_SERVICE_HOST", "")
        svc_port = os.environ.get("KUBERNETES_SERVICE_PORT", "")
        if not svc_host or not svc_port:
            raise RuntimeError(
                "unable to load the in-cluster configuration: KUBERNETES_SERVICE_HOST and "
                "KUBERNETES_SERVICE_PORT must be set (or pass a K8sClient to Builder, "
                "e.g. new_insecure_k8s_client('http://127.0.0.1:8001') behind kubectl proxy)"
            )
        if ":" in svc_host:
            svc_host = f"[{svc_host}]"
        host = f"https://{svc_host}:{svc_port}"
    for what, path in (("token", token_file), ("CA", ca_file)):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"the ServiceAccount {what} file {os.fspath(path)} is missing")
    client: K8sClient = _implementation()(
        host, token_file=os.fspath(token_file), ca_file=os.fspath(ca_file)
    )
    return client


def new_insecure_k8s_client(url: str) -> K8sClient:
    """A client that talks plain HTTP to ``url``, a proxy that authenticates (``kubectl proxy``)."""
    client: K8sClient = _implementation()(url.rstrip("/"))
    return client


def kubeconfig_path(kubeconfig: str | os.PathLike[str] | None = None) -> str:
    """The kubeconfig ``kubectl`` would read: the argument, ``$KUBECONFIG``, ``~/.kube/config``.

    ``$KUBECONFIG`` may list several files (``os.pathsep``): they are merged, as kubectl
    merges them.
    """
    if kubeconfig is not None and os.fspath(kubeconfig):
        return os.path.expanduser(os.fspath(kubeconfig))
    return os.environ.get("KUBECONFIG", "").strip() or os.path.expanduser("~/.kube/config")


def new_kubeconfig_k8s_client(
    kubeconfig: str | os.PathLike[str] | None = None, *, context: str | None = None
) -> K8sClient:
    """A client on a kubeconfig's credentials (out of cluster), found as ``kubectl`` does.

    The file is :func:`kubeconfig_path`'s; ``context`` defaults to its current context.
    """
    path = kubeconfig_path(kubeconfig)
    files = [p for p in path.split(os.pathsep) if p]
    if not any(os.path.isfile(f) for f in files):
        raise FileNotFoundError(
            f"no kubeconfig: {path} does not exist (from "
            + (
                "the kubeconfig argument"
                if kubeconfig is not None and os.fspath(kubeconfig)
                else "$KUBECONFIG"
                if os.environ.get("KUBECONFIG", "").strip()
                else "the default, ~/.kube/config"
            )
            + "; direct mode out of cluster reads the kubeconfig kubectl would)"
        )
    client: K8sClient = _implementation().from_kubeconfig(path, context=context)
    return client


def new_k8s_client(
    kubeconfig: str | os.PathLike[str] | None = None, *, context: str | None = None
) -> K8sClient:
    """In a Pod (``KUBERNETES_SERVICE_HOST`` set) and no kubeconfig named: the Pod's
    ServiceAccount; else :func:`new_kubeconfig_k8s_client`."""
    named = (kubeconfig is not None and os.fspath(kubeconfig)) or context is not None
    in_pod = bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and os.path.isfile(DEFAULT_TOKEN_FILE)
    if in_pod and not named:
        return new_in_cluster_k8s_client()
    return new_kubeconfig_k8s_client(kubeconfig, context=context)


def _implementation() -> Any:
    """The client class on the ``kubernetes`` library, loaded now, not at import."""
    try:
        module = importlib.import_module("kuberesolver.kube.kubernetes_client")
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise ImportError(f"{_EXTRA_HINT} ({exc})") from exc
    return module.KubernetesClient
