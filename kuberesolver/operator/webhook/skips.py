"""A skipped injection, told to the Pod's owner: the reason, whom the Event is about, and
how many Events a storm of Pods may cost (pure).

The webhook never denies a Pod it cannot serve; it admits it unchanged with a
warning. The warning reaches only whoever created the Pod (often a
ReplicaSet, which does not show it), so each skip is also a log line, a count
in ``kuberesolver_operator_admissions_total{outcome="skipped",reason}`` and a
Warning Event ``InjectionSkipped``. At admission the Pod has no uid yet, so
the Event is about its controller (``ownerReferences``: ``kubectl describe
replicaset`` shows it), else the Pod by name, else its namespace.

:class:`SkipEvents` aggregates: the first skip of a (namespace, object,
reason) in a window is posted at once; the rest in that window become one
Event when it ends (``count`` = how many), and at most ``max_posts`` Events
per window are posted in all, however many Pods are created.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

__all__ = [
    "SKIP_REASON",
    "Problem",
    "SkipEvents",
    "Summary",
    "pod_label",
    "reason_of",
    "regarding",
]

SKIP_REASON: Final = "InjectionSkipped"
"""The Event's ``reason``."""

EventKey = tuple[str, str, str, str]
"""(namespace, kind, name, skip reason)."""


class Problem(str):
    """A warning for the admission response that also says why, as a metric label.

    It is a ``str``: everything that reads warnings reads it unchanged.
    """

    reason: str

    def __new__(cls, message: str, reason: str) -> Problem:
        self = super().__new__(cls, message)
        self.reason = reason
        return self


def reason_of(problem: str) -> str:
    """The reason a warning carries (``other`` for a plain string)."""
    return getattr(problem, "reason", "other")


def regarding(pod: Mapping[str, Any], namespace: str) -> dict[str, Any]:
    """Whom the Event about a skipped Pod is about: its controller (or first owner), else
    the Pod by name, else its namespace (a Pod named by ``generateName`` only).

    >>> regarding({"metadata": {"name": "p"}}, "app")
    {'apiVersion': 'v1', 'kind': 'Pod', 'metadata': {'name': 'p', 'namespace': 'app'}}
    """
    meta = pod.get("metadata") or {}
    owners = [o for o in meta.get("ownerReferences") or [] if isinstance(o, Mapping)]
    owner = next((o for o in owners if o.get("controller")), owners[0] if owners else None)
    if owner is not None and owner.get("kind") and owner.get("name"):
        return {
            "apiVersion": owner.get("apiVersion"),
            "kind": owner["kind"],
            "metadata": {"name": owner["name"], "namespace": namespace, "uid": owner.get("uid")},
        }
    if meta.get("name"):
        pod_meta = {"name": meta["name"], "namespace": namespace}
        return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta}
    # A Namespace is cluster-scoped, but its Event stays in it (where its Pods are).
    ns_meta = {"name": namespace, "namespace": namespace}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": ns_meta}


def pod_label(pod: Mapping[str, Any]) -> str:
    """The Pod as a log line or an Event names it: ``name``, or ``generateName*``."""
    meta = pod.get("metadata") or {}
    return str(meta.get("name") or f"{meta.get('generateName') or ''}*")


@dataclass(slots=True)
class _Window:
    start: float
    message: str
    regarding: dict[str, Any]
    pending: int
    """Skips seen in this window and not yet in a posted Event."""


@dataclass(frozen=True, slots=True)
class Summary:
    """One Event for ``count`` skips of the same kind about the same object."""

    regarding: dict[str, Any]
    message: str
    count: int


class SkipEvents:
    """Which skips become an Event now, which wait for their window's summary, and
    which are dropped (over the budget, or too many distinct objects at once)."""

    def __init__(self, window_s: float = 60.0, max_posts: int = 30, max_keys: int = 1000) -> None:
        self.window_s = window_s
        self.max_posts = max_posts
        self.max_keys = max_keys
        self.dropped = 0
        """Skips never posted (a count, for the log)."""
        self._windows: dict[EventKey, _Window] = {}
        self._ended: list[_Window] = []
        self._budget_start = float("-inf")
        self._budget_used = 0

    def offer(
        self, key: EventKey, message: str, about: dict[str, Any], now: float
    ) -> Literal["post", "later", "drop"]:
        """``post``: post an Event now; ``later``: in this window's summary; ``drop``."""
        window = self._windows.get(key)
        if window is not None and now - window.start < self.window_s:
            window.pending += 1
            window.message = message
            return "later"
        if window is not None:  # its window ended: its summary waits for due()
            del self._windows[key]
            self._ended.append(window)
        if len(self._windows) >= self.max_keys:
            self.dropped += 1
            return "drop"
        post = self._spend(now)
        self._windows[key] = _Window(now, message, about, 0 if post else 1)
        return "post" if post else "later"

    def due(self, now: float) -> list[Summary]:
        """The summaries of the windows that ended (each forgotten), within the budget."""
        out: list[Summary] = []
        ended, self._ended = self._ended, []
        for key, window in list(self._windows.items()):
            if now - window.start >= self.window_s:
                del self._windows[key]
                ended.append(window)
        for window in ended:
            if not window.pending:
                continue
            if self._spend(now):
                out.append(Summary(window.regarding, window.message, window.pending))
            else:
                self.dropped += window.pending
        return out

    def _spend(self, now: float) -> bool:
        if now - self._budget_start >= self.window_s:
            self._budget_start, self._budget_used = now, 0
        if self._budget_used >= self.max_posts:
            return False
        self._budget_used += 1
        return True
