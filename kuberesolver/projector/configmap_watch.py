"""Watch ONE ConfigMap and project it into a directory with kubelet's atomic layout.

It needs only ``get``, ``list`` and ``watch`` on that one ConfigMap (a Role
with ``resourceNames: [<name>]``): every request names it with the field
selector ``metadata.name=<name>``. The loop is the shared
:class:`~kuberesolver.kube.reflector.Reflector` (bookmarks, 410 relist,
jittered backoff), over :mod:`kuberesolver.kube.http`.

Behaviour:

- each ADDED or MODIFIED version is written with
  :func:`~kuberesolver.core.atomic_writer.write_atomic` (nothing is
  written when the content is the same);
- a deleted or absent ConfigMap leaves the directory as it was (as kubelet
  does): never an empty projection because something went missing;
- errors (403, connection refused, an expired resourceVersion) are logged and
  retried with backoff; the last good files stay. A 403 is one ERROR line
  (until it is allowed again) that says which rights the ServiceAccount lacks
  (:func:`rbac_hint`);
- nothing it reads stops it: a version it cannot project is logged once
  with its traceback, counted in ``errors``, and skipped; the last good
  files stay;
- ``lag_s`` > 0 writes each version after the first only that long after it
  was seen, as kubelet's slow refresh of a mounted ConfigMap would (kubelet
  mounts the current version when the pod starts; see :mod:`.lag`).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kuberesolver.core.atomic_writer import write_atomic
from kuberesolver.kube.http import Collection, HttpApi
from kuberesolver.kube.reflector import Reflector, Transport
from kuberesolver.projector.lag import Lagged

__all__ = ["ConfigMapProjector", "configmap_transport", "files_of", "rbac_hint"]

_log = logging.getLogger("kuberesolver.projector")


def files_of(configmap: Mapping[str, Any]) -> dict[str, bytes]:
    """The files a ConfigMap volume holds: ``data`` as UTF-8, ``binaryData`` decoded."""
    files = {str(k): str(v).encode("utf-8") for k, v in (configmap.get("data") or {}).items()}
    for k, v in (configmap.get("binaryData") or {}).items():
        files[str(k)] = base64.b64decode(v, validate=True)
    return files


@dataclass(frozen=True)
class _Version:
    files: dict[str, bytes]
    resource_version: str


def _decode(configmap: Mapping[str, Any]) -> _Version:
    meta = configmap.get("metadata") or {}
    return _Version(files_of(configmap), str(meta.get("resourceVersion") or ""))


def configmap_transport(api: HttpApi, namespace: str, name: str) -> Collection:
    """List and watch the one ConfigMap ``namespace/name`` (a field selector on its name)."""
    return Collection(
        api,
        f"/api/v1/namespaces/{namespace}/configmaps",
        f"ConfigMap {namespace}/{name}",
        params={"fieldSelector": f"metadata.name={name}"},
    )


def rbac_hint(namespace: str, name: str) -> str:
    """What a refused projector lacks, for its one log line."""
    return (
        f"this Pod's ServiceAccount needs get, list and watch on ConfigMap {name} in namespace "
        f"{namespace} (a Role with resourceNames: [{name}] and a RoleBinding to the "
        "ServiceAccount, as in manifests/examples/projector-rbac.yaml)"
    )


class ConfigMapProjector:
    """Keeps ``directory`` equal to the ConfigMap that ``transport`` lists and watches.

    :meth:`run` blocks until :meth:`stop` is called (from another thread or a
    signal handler); both are idempotent.
    """

    def __init__(
        self,
        transport: Transport,
        directory: str | Path,
        *,
        on_write: Callable[[int], None] | None = None,
        lag_s: float = 0.0,
        refused_hint: str = "check the RBAC of this ServiceAccount",
    ) -> None:
        self.transport = transport
        self.directory = Path(directory)
        self.on_write = on_write
        self.writes = 0
        self.reflector = Reflector(
            transport, _decode, self._on_list, self._on_event, log=_log, refused_hint=refused_hint
        )
        self._lagged: Lagged[_Version] | None = Lagged(self._write, lag_s) if lag_s > 0 else None

    @property
    def errors(self) -> int:
        """Versions or events that could not be projected (each problem logged once)."""
        return self.reflector.skipped

    def stop(self) -> None:
        self.reflector.stop()
        if self._lagged is not None:
            self._lagged.stop()

    @property
    def stopped(self) -> bool:
        return self.reflector.stopped

    def run(self) -> None:
        self.reflector.run()

    def run_once(self) -> bool:
        """Project the current ConfigMap once (without lag); whether it existed."""
        items = self.transport.list().items
        if items:
            self._write(_decode(items[0]))
        return bool(items)

    def handle(self, event: Mapping[str, Any]) -> None:
        """Apply one raw watch event (what the watch does with each)."""
        self.reflector.handle(event)

    # -- internals --------------------------------------------------------------------------

    def _on_list(self, versions: list[_Version]) -> None:
        if versions:
            self._project(versions[0])
        else:
            _log.warning("%s does not exist (yet); waiting for it", self.transport.what)

    def _on_event(self, kind: str, version: _Version) -> None:
        if kind == "DELETED":
            _log.warning("%s was deleted; keeping the last files", self.transport.what)
        else:
            self._project(version)

    def _project(self, version: _Version) -> None:
        if self._lagged is not None and self.writes:
            self._lagged.submit(version)
        else:
            self._write(version)

    def _write(self, version: _Version) -> None:
        if write_atomic(self.directory, version.files):
            self.writes += 1
            _log.info(
                "projected %s (resourceVersion %s) into %s",
                self.transport.what, version.resource_version, self.directory,
            )  # fmt: skip
            if self.on_write is not None:
                self.on_write(self.writes)
