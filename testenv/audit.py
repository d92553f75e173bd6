"""The apiserver's audit log (``ControlPlane(audit=True)``): which calls a user made.

Each line of the log is one JSON event; with the testenv policy, a
ServiceAccount's request at its end (``ResponseComplete``; a watch also when it
starts, ``ResponseStarted``). :class:`AuditLog` reads the events past a mark, so
that one test's operator run is judged on its own calls.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class Call:
    """One request: its verb, where it landed, and the answer's code."""

    verb: str
    group: str
    resource: str
    namespace: str
    """"" for a cluster-scoped resource, or a list or watch across all namespaces."""
    name: str
    code: int
    uri: str

    def __str__(self) -> str:
        where = f"in {self.namespace}" if self.namespace else "cluster-wide"
        return f"{self.code} {self.verb} {self.group or 'core'}/{self.resource} {where}: {self.uri}"


class AuditLog:
    """The audit log at ``path``; :meth:`mark` then :meth:`calls` reads what came after."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0

    def mark(self) -> None:
        """Forget the calls so far: :meth:`calls` returns only later ones."""
        self._offset = self.path.stat().st_size if self.path.exists() else 0

    def calls(self, user: str) -> list[Call]:
        """The requests of ``user`` since :meth:`mark`, in order (a watch still open too)."""
        if not self.path.exists():
            return []
        with self.path.open("rb") as f:
            f.seek(self._offset)
            data = f.read()
        lines = data[: data.rfind(b"\n") + 1].splitlines()  # a line being written waits
        latest: dict[str, dict[str, Any]] = {}  # auditID -> its last stage
        for line in lines:
            if not line.strip():
                continue
            event = json.loads(line)
            if (event.get("user") or {}).get("username") == user:
                latest[str(event.get("auditID"))] = event
        return [_call(e) for e in latest.values()]


def _call(event: dict[str, Any]) -> Call:
    ref = event.get("objectRef") or {}
    sub = ref.get("subresource")
    return Call(
        verb=str(event.get("verb") or ""),
        group=str(ref.get("apiGroup") or ""),
        resource=str(ref.get("resource") or "") + (f"/{sub}" if sub else ""),
        namespace=str(ref.get("namespace") or ""),
        name=str(ref.get("name") or ""),
        code=int((event.get("responseStatus") or {}).get("code") or 0),
        uri=str(event.get("requestURI") or ""),
    )
