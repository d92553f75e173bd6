"""What the operator registers with kopf: read-only on foreign resources, no finalizers."""

from __future__ import annotations

import kopf

import kuberesolver.operator  # noqa: F401  (registers the handlers)
from kuberesolver.operator import handlers


def test_no_handler_adds_a_finalizer() -> None:
    registry = kopf.get_default_registry()
    spawning = list(registry._spawning._handlers)
    assert [h.id for h in spawning] == ["grpctarget_daemon"]
    assert not any(h.requires_finalizer for h in spawning)
    assert not any(h.requires_finalizer for h in registry._changing._handlers)


def test_foreign_resources_are_only_indexed_and_watched() -> None:
    registry = kopf.get_default_registry()
    # No on.create/update/resume/delete at all: they would write progress annotations.
    assert list(registry._changing._handlers) == []
    assert {h.id for h in registry._indexing._handlers} == {"service_index", "endpointslice_index"}
    watching = {h.id for h in registry._watching._handlers}
    assert watching == {"service_event", "endpointslice_event", "grpctarget_event"}


def test_handlers_are_named_resource_then_event() -> None:
    for name in ("service_index", "endpointslice_index", "grpctarget_daemon", "grpctarget_event"):
        assert callable(getattr(handlers, name))
