"""Leader election with a ``coordination.k8s.io`` Lease, as Kubernetes' own controllers do.

Every replica watches GrpcTargets, Services and EndpointSlices (warm
views); only the holder of the Lease writes. Each replica reads the Lease
every ``retry_s``:

- absent: create it, holding it;
- held by this replica: renew it (a conditional update);
- released (no holder), or unchanged for ``duration_s`` since this replica
  first saw that version: take it over (a conditional update; of two
  replicas racing, one gets 409);
- else: wait.

The leader stops writing once it has not renewed for ``renew_deadline_s``
(shorter than ``duration_s``), so two replicas never write at once while
their clocks run at the same rate. A clean exit releases the Lease, so the
other replica takes over at its next read.

Why not kopf peering: a replica cannot learn through kopf's public API
whether it is paused, peering pauses the standby's watches (so it starts
cold), and its keep-alive period is the lifetime minus 5-10 s.
:func:`decide` and :func:`build_lease` are pure; :class:`LeaderElector` is the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import enum
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["Action", "LeaderElector", "LeaseApi", "LeaseRecord", "build_lease", "decide"]

_log = logging.getLogger("kuberesolver.operator.leader")


class LeaseApi(Protocol):
    """The three calls the elector makes (:class:`~.kube.Kube` has them)."""

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    async def create_lease(self, body: dict[str, Any]) -> dict[str, Any]: ...
    async def replace_lease(self, body: dict[str, Any]) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    holder: str
    duration_s: int
    transitions: int
    renew_time: str
    acquire_time: str
    resource_version: str

    @classmethod
    def of(cls, lease: Mapping[str, Any]) -> LeaseRecord:
        spec = lease.get("spec") or {}
        return cls(
            holder=str(spec.get("holderIdentity") or ""),
            duration_s=int(spec.get("leaseDurationSeconds") or 0),
            transitions=int(spec.get("leaseTransitions") or 0),
            renew_time=str(spec.get("renewTime") or ""),
            acquire_time=str(spec.get("acquireTime") or ""),
            resource_version=str((lease.get("metadata") or {}).get("resourceVersion") or ""),
        )


class Action(enum.Enum):
    CREATE = "create"
    RENEW = "renew"
    TAKE_OVER = "take over"
    WAIT = "wait"


def decide(record: LeaseRecord | None, me: str, *, unchanged_for_s: float) -> Action:
    """What this replica does with the Lease it just read.

    ``unchanged_for_s``: how long this replica has seen this very version of
    the Lease (a renewal by the holder makes a new version).
    """
    if record is None:
        return Action.CREATE
    if record.holder == me:
        return Action.RENEW
    if not record.holder or unchanged_for_s >= record.duration_s:
        return Action.TAKE_OVER
    return Action.WAIT


def micro_time(now: datetime.datetime) -> str:
    return now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def build_lease(
    namespace: str,
    name: str,
    holder: str,
    duration_s: int,
    now: datetime.datetime,
    previous: LeaseRecord | None = None,
) -> dict[str, Any]:
    """The Lease to write: held by ``holder`` (``""`` releases it), renewed ``now``.

    With ``previous`` the write is conditional on its resourceVersion, and a
    change of holder counts a transition.
    """
    stamp = micro_time(now)
    same_holder = previous is not None and previous.holder == holder and bool(holder)
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if previous is not None:
        metadata["resourceVersion"] = previous.resource_version
    transitions = previous.transitions if previous is not None else 0
    if previous is not None and not same_holder and holder:
        transitions += 1
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": metadata,
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": duration_s if holder else 1,
            "acquireTime": previous.acquire_time if same_holder and previous else stamp,
            "renewTime": stamp,
            "leaseTransitions": transitions,
        },
    }


class LeaderElector:
    """Holds or waits for the Lease; calls ``on_start``/``on_stop`` when leadership changes.

    :meth:`run` loops until :meth:`close`; :attr:`leading` says whether this
    replica may write right now. :meth:`close` releases a held Lease; idempotent.
    """

    def __init__(
        self,
        api: LeaseApi,
        *,
        namespace: str,
        name: str,
        identity: str,
        duration_s: int,
        retry_s: float,
        renew_deadline_s: float,
        on_start: Callable[[], Awaitable[None]],
        on_stop: Callable[[], Awaitable[None]],
    ) -> None:
        self._api = api
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.duration_s = duration_s
        self.retry_s = retry_s
        self.renew_deadline_s = renew_deadline_s
        self._on_start = on_start
        self._on_stop = on_stop
        self._leading = False
        self._renewed_at = -float("inf")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._seen: LeaseRecord | None = None
        self._seen_since = 0.0
        self._closed = asyncio.Event()
        self._record: LeaseRecord | None = None

    @property
    def leading(self) -> bool:
        """Whether this replica holds the Lease, renewed within the renew deadline."""
        loop = asyncio.get_running_loop()
        return self._leading and loop.time() - self._renewed_at < self.renew_deadline_s

    def leading_seen_from_a_thread(self) -> bool:
        """:attr:`leading`, read from another thread (the metrics server's), on the
        clock of the loop that runs :meth:`run`; False before it runs."""
        loop = self._loop
        if loop is None:
            return False
        return self._leading and loop.time() - self._renewed_at < self.renew_deadline_s

    async def run(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        while not self._closed.is_set():
            started = loop.time()
            holds = False
            try:
                # Bounded: a hung request must not keep a stale leader writing.
                holds = await asyncio.wait_for(self._step(started), 2 * self.retry_s)
            except Exception as exc:  # an API error or a timeout: try again next period
                _log.warning("Lease %s/%s: %r", self.namespace, self.name, exc)
            if holds and not self._leading and not self._closed.is_set():
                self._leading = True
                _log.info("leading: this replica (%s) writes from now on", self.identity)
                await self._on_start()
            elif self._leading and not self.leading:
                _log.warning(
                    "Lease %s/%s not held or not renewed in time", self.namespace, self.name
                )
                await self._stop_leading()
            delay = max(0.0, self.retry_s - (loop.time() - started))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closed.wait(), delay)

    async def _step(self, now: float) -> bool:
        """Read the Lease and act on it; whether this replica holds it now."""
        raw = await self._api.get_lease(self.namespace, self.name)
        record = LeaseRecord.of(raw) if raw is not None else None
        if record != self._seen:
            self._seen, self._seen_since = record, now
        action = decide(record, self.identity, unchanged_for_s=now - self._seen_since)
        if action is Action.WAIT:
            self._renewed_at = -float("inf")
            return False
        body = build_lease(
            self.namespace,
            self.name,
            self.identity,
            self.duration_s,
            datetime.datetime.now(datetime.UTC),
            record,
        )
        if action is Action.CREATE:
            written = await self._api.create_lease(body)
        else:
            written = await self._api.replace_lease(body)
        self._record = LeaseRecord.of(written)
        self._renewed_at = now
        if action is Action.TAKE_OVER:
            _log.info(
                "Lease %s/%s taken over from %r",
                self.namespace,
                self.name,
                record.holder if record else "",
            )
        return True

    async def _stop_leading(self) -> None:
        if self._leading:
            self._leading = False
            _log.info("not leading: this replica (%s) stops writing", self.identity)
            await self._on_stop()

    async def close(self, timeout_s: float = 5.0) -> None:
        """Stop the loop; stop leading and release the Lease if held. Idempotent."""
        self._closed.set()
        held = self._leading or self._record is not None
        await self._stop_leading()
        if held:
            try:
                released = await asyncio.wait_for(self._release(), timeout_s)
            except Exception as exc:  # the others wait out the duration instead
                _log.warning("Lease %s/%s not released: %s", self.namespace, self.name, exc)
            else:
                if released:
                    _log.info("Lease %s/%s released", self.namespace, self.name)

    async def _release(self) -> bool:
        """Give the Lease up if this replica holds it; whether it did.

        Read afresh: a renewal still in flight when :meth:`close` began may
        have changed its resourceVersion, and a write on the old one gets 409.
        """
        while True:
            raw = await self._api.get_lease(self.namespace, self.name)
            record = LeaseRecord.of(raw) if raw is not None else None
            if record is None or record.holder != self.identity:
                return False
            body = build_lease(
                self.namespace, self.name, "", 1, datetime.datetime.now(datetime.UTC), record
            )
            try:
                await self._api.replace_lease(body)
            except Exception as exc:  # a conflict with our own last renewal: read again
                _log.info("Lease %s/%s: release retried after %s", self.namespace, self.name, exc)
                await asyncio.sleep(0.1)
            else:
                return True
