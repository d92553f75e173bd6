"""The targets the operator serves over xDS, and their resources, in memory.

The operator's seam: ``put((namespace, name), snapshot, service_config)``
whenever it publishes a snapshot, ``remove((namespace, name))`` when a target
goes. Each target is served under the store's authority as
``<name>.<namespace>``, so a client dials ``xds://<authority>/<name>.<namespace>``.

``put`` builds the three resources with the shared builders
(:mod:`kuberesolver.xds.resources`) and tells every listener which resource
names changed, by type; an unchanged resource is not reported, so an
EndpointSlice change that leaves the route and the cluster alone reports only
the ClusterLoadAssignment. Thread-safe: listeners run on the caller's thread
and must only hand the news on (the ADS server schedules it on its loop).

Zones: the shared CLA makes each zone a locality. A client whose bootstrap
names its zone (``node.locality.zone``) is served a variant that puts its own
zone first and fails over to the others (:meth:`XdsStore.resources` with
``zone``), built on first use and kept until the target changes.

Method timeouts: a target whose service config sets a ``methodConfig``
``timeout`` also gets a Listener variant that carries it as each route's
``max_stream_duration`` (:meth:`XdsStore.resources` with ``timeouts``),
built with the plain one in ``put``. The server serves it to the clients that
apply it correctly; grpc's C core (grpcio, C++) ends such calls 1-2 s early
(grpc/grpc#34547) and gets the plain one. ``put`` reports the Listener when
either version changed.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from google.protobuf import any_pb2  # type: ignore[import-untyped]
from google.protobuf.message import Message  # type: ignore[import-untyped]

from kuberesolver.core.policies import DEFAULT_MAX_ATTEMPTS
from kuberesolver.core.service_config import method_rules
from kuberesolver.core.snapshot import Snapshot
from kuberesolver.xds.bootstrap import DEFAULT_AUTHORITY
from kuberesolver.xds.resources import (
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    TYPES,
    ResourceSpec,
    build_listener,
    build_resources,
    listener_name,
)

__all__ = ["Changes", "Key", "XdsStore", "key_of", "resource_name"]

log = logging.getLogger("kuberesolver.xds_server")

Key = tuple[str, str]
"""``(namespace, name)`` of a target (the operator's GrpcTarget)."""

Changes = Mapping[str, frozenset[str]]
"""Changed (added, replaced or removed) resource names, by type URL."""


def resource_name(key: Key) -> str:
    """The name after the type in every resource of ``key``: ``<name>.<namespace>``."""
    namespace, name = key
    return f"{name}.{namespace}"


def key_of(resource: str) -> Key | None:
    """The key whose resources include ``resource`` (an ``xdstp://`` name), by its last part
    ``<name>.<namespace>`` (a namespace holds no dot); ``None`` for a name not of that form."""
    last = resource.rsplit("/", 1)[-1]
    name, dot, namespace = last.rpartition(".")
    return (namespace, name) if dot and name and namespace else None


class XdsStore:
    """``(namespace, name) -> (Snapshot, service config)``, and the xDS resources they make."""

    def __init__(
        self,
        authority: str = DEFAULT_AUTHORITY,
        *,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    ) -> None:
        self.authority = authority
        self._max_attempts = max_attempts
        self._lock = threading.Lock()
        self._targets: dict[Key, tuple[Snapshot, Mapping[str, Any]]] = {}
        self._resources: dict[str, dict[str, any_pb2.Any]] = {t: {} for t in TYPES}
        self._names: dict[Key, dict[str, str]] = {}
        self._zoned: dict[str, dict[str, any_pb2.Any]] = {}
        """Per CLA name: the variants that prefer a zone, by zone."""
        self._timed: dict[str, any_pb2.Any] = {}
        """Per Listener name: the variant with the method timeouts (targets that set any)."""
        self._cla_keys: dict[str, Key] = {}
        self._listeners: list[Callable[[Changes], None]] = []

    def listen(self, callback: Callable[[Changes], None]) -> Callable[[], None]:
        """Call ``callback`` with each change; returns the function that stops it."""
        with self._lock:
            self._listeners.append(callback)

        def stop() -> None:
            with self._lock:
                if callback in self._listeners:
                    self._listeners.remove(callback)

        return stop

    def spec(self, key: Key, snapshot: Snapshot) -> ResourceSpec:
        """How ``key``'s resources are built: named for the key, balanced per zone."""
        return ResourceSpec(
            name=resource_name(key),
            service=snapshot.target.service,
            namespace=snapshot.target.namespace,
            authority=self.authority,
            max_attempts=self._max_attempts,
        )

    def listener(self, key: Key) -> str:
        """The Listener name of ``key`` (what ``xds://<authority>/<name>.<namespace>`` asks for)."""
        return listener_name(resource_name(key), self.authority)

    def put(
        self, key: Key, snapshot: Snapshot, service_config: Mapping[str, Any] | None = None
    ) -> Changes:
        """Serve ``snapshot`` for ``key``; ``service_config`` (if given) replaces the snapshot's.

        Returns what changed (empty when nothing did). ``ValueError`` when the snapshot
        cannot be served (the previous one stays).
        """
        if service_config is not None:
            snapshot = dataclasses.replace(snapshot, service_config=dict(service_config))
        try:
            spec = self.spec(key, snapshot)
            packed = _pack(build_resources(spec, snapshot))
            timed = None
            if _has_timeouts(snapshot.service_config):
                timed_spec = dataclasses.replace(spec, method_timeouts=True)
                timed = _pack(
                    {LISTENER_TYPE: {self.listener(key): build_listener(timed_spec, snapshot)}}
                )
        except (ValueError, TypeError) as exc:  # e.g. a port out of range: keep the last good
            raise ValueError(
                f"{resource_name(key)} revision {snapshot.revision}: cannot build its xDS "
                f"resources ({exc}); still serving the previous ones"
            ) from exc
        with self._lock:
            old = self._targets.get(key)
            self._targets[key] = (snapshot, snapshot.service_config)
            changes: dict[str, frozenset[str]] = {}
            for type_url, by_name in packed.items():
                table = self._resources[type_url]
                changed = {n for n, a in by_name.items() if _bytes(table.get(n)) != a.value}
                if type_url == LISTENER_TYPE:  # and the variant clients with timeouts get
                    new = timed[LISTENER_TYPE] if timed is not None else by_name
                    changed.update(
                        n for n, a in new.items()
                        if _bytes(self._timed.get(n, table.get(n))) != a.value
                    )  # fmt: skip
                    for n in by_name:
                        self._timed.pop(n, None)
                    if timed is not None:
                        self._timed.update(timed[LISTENER_TYPE])
                if type_url == ENDPOINT_TYPE and (
                    old is None or old[0].endpoints != snapshot.endpoints
                ):
                    changed.update(by_name)  # a zone moved: the zone variants may differ
                table.update(by_name)
                if changed:
                    changes[type_url] = frozenset(changed)
            self._names[key] = {t: next(iter(by_name)) for t, by_name in packed.items()}
            cla = self._names[key][ENDPOINT_TYPE]
            self._cla_keys[cla] = key
            self._zoned.pop(cla, None)
            listeners = list(self._listeners)
        return self._notify(changes, listeners)

    def remove(self, key: Key) -> Changes:
        """Stop serving ``key``: its resources are gone from the next response."""
        with self._lock:
            self._targets.pop(key, None)
            names = self._names.pop(key, {})
            changes: dict[str, frozenset[str]] = {}
            for type_url, name in names.items():
                if self._resources[type_url].pop(name, None) is not None:
                    changes[type_url] = frozenset({name})
            self._timed.pop(names.get(LISTENER_TYPE, ""), None)
            cla = names.get(ENDPOINT_TYPE)
            if cla is not None:
                self._zoned.pop(cla, None)
                self._cla_keys.pop(cla, None)
            listeners = list(self._listeners)
        return self._notify(changes, listeners)

    def keys(self) -> list[Key]:
        with self._lock:
            return sorted(self._targets)

    def get(self, key: Key) -> tuple[Snapshot, Mapping[str, Any]] | None:
        """What ``key`` serves: its snapshot and service config."""
        with self._lock:
            return self._targets.get(key)

    def timed(self, key: Key) -> bool:
        """Whether ``key``'s service config sets a method timeout (its Listener has a variant)."""
        with self._lock:
            names = self._names.get(key, {})
            return names.get(LISTENER_TYPE, "") in self._timed

    def resources(
        self, type_url: str, names: Iterable[str], zone: str = "", timeouts: bool = False
    ) -> dict[str, any_pb2.Any]:
        """The resources of ``type_url`` among ``names`` that exist (packed, do not modify);
        with ``zone``, the CLAs are the variants that prefer it; with ``timeouts``, the
        Listeners carry the method timeouts as ``max_stream_duration``."""
        with self._lock:
            table = self._resources.get(type_url, {})
            if timeouts and type_url == LISTENER_TYPE:
                return {n: self._timed.get(n, table[n]) for n in names if n in table}
            if not zone or type_url != ENDPOINT_TYPE:
                return {n: table[n] for n in names if n in table}
            return {n: self._zone_variant(n, zone) for n in names if n in table}

    def _zone_variant(self, cla: str, zone: str) -> any_pb2.Any:
        variants = self._zoned.setdefault(cla, {})
        found = variants.get(zone)
        if found is None:
            key = self._cla_keys[cla]
            snapshot = self._targets[key][0]
            spec = dataclasses.replace(self.spec(key, snapshot), zone=zone)
            found = _pack({ENDPOINT_TYPE: build_resources(spec, snapshot)[ENDPOINT_TYPE]})
            found = found[ENDPOINT_TYPE][cla]
            variants[zone] = found
        return found

    def _notify(
        self, changes: dict[str, frozenset[str]], listeners: list[Callable[[Changes], None]]
    ) -> Changes:
        if changes:
            for callback in listeners:
                try:
                    callback(changes)
                except Exception:  # one broken listener must not starve the others
                    log.exception("an xDS store listener failed")
        return changes


def _pack(built: Mapping[str, Mapping[str, Message]]) -> dict[str, dict[str, any_pb2.Any]]:
    packed: dict[str, dict[str, any_pb2.Any]] = {}
    for type_url, by_name in built.items():
        packed[type_url] = {}
        for name, message in by_name.items():
            packed[type_url][name] = any_pb2.Any()
            packed[type_url][name].Pack(message)
    return packed


def _has_timeouts(service_config: Mapping[str, Any]) -> bool:
    return any(rule.timeout_ns is not None for rule in method_rules(service_config))


def _bytes(packed: any_pb2.Any | None) -> bytes | None:
    return None if packed is None else packed.value
