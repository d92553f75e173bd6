"""The one reflector on the real API server: 410 relist (as an ERROR event and as a status),
bookmarks, a watch the server ends resumed, a refused list, recovery.

Every caller (the operator's informer, direct mode, the projector) runs this same loop, so
its behaviours are tested here once; the callers' tests test what they do with its output.
It runs as a namespace's own ServiceAccount, with a Role that grants exactly
list and watch on ConfigMaps (or nothing, for the refused list).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from kuberesolver.kube.credentials import load_config
from kuberesolver.kube.http import Collection, HttpApi
from kuberesolver.kube.reflector import Listed, Reflector, Watch
from testenv import ControlPlane
from testenv.kube import apply_object, service_account_token
from testenv.wait import until
from tests.cluster import compact_etcd

pytestmark = pytest.mark.integration

_log = logging.getLogger("test.reflector")


class _Recording:
    """The real transport, remembering each raw event the API sent (to see bookmarks) and,
    in ``log``, each watch's resourceVersion among them."""

    def __init__(self, inner: Collection) -> None:
        self.inner = inner
        self.what = inner.what
        self.events: list[Mapping[str, Any]] = []
        self.log: list[tuple[str, str]] = []
        """``("watch", its resourceVersion)`` and ``(event type, its resourceVersion)``."""

    def list(self) -> Listed:
        return self.inner.list()

    def watch(self, resource_version: str) -> Watch:
        stream = self.inner.watch(resource_version)
        self.log.append(("watch", resource_version))
        events, log = self.events, self.log

        class _Seen:
            def __iter__(self) -> Iterator[Mapping[str, Any]]:
                for event in stream:
                    events.append(event)
                    log.append((str(event.get("type")), _rv_of(event)))
                    yield event

            def close(self) -> None:
                stream.close()

        return _Seen()


class _Names:
    """What the reflector hands on: the ConfigMaps' names, and every event."""

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.events: list[tuple[str, str]] = []

    def on_list(self, names: list[str]) -> None:
        self.names = set(names)

    def on_event(self, kind: str, name: str) -> None:
        self.events.append((kind, name))
        if kind == "DELETED":
            self.names.discard(name)
        else:
            self.names.add(name)


def _rv_of(event: Mapping[str, Any]) -> str:
    return str(((event.get("object") or {}).get("metadata") or {}).get("resourceVersion") or "")


def _name(obj: Mapping[str, Any]) -> str:
    return str(obj["metadata"]["name"])


@pytest.fixture
def kubeconfig(control_plane: ControlPlane, admin_api: client.ApiClient, namespace: str) -> Path:
    token = service_account_token(admin_api, namespace, "default")
    return control_plane.token_kubeconfig(f"reflector-{namespace}", token, namespace)


def _grant(admin_api: client.ApiClient, namespace: str) -> None:
    group = "rbac.authorization.k8s.io"
    rbac = f"{group}/v1"
    apply_object(admin_api, {
        "apiVersion": rbac, "kind": "Role",
        "metadata": {"name": "read-configmaps", "namespace": namespace},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list", "watch"]}],
    })  # fmt: skip
    apply_object(admin_api, {
        "apiVersion": rbac, "kind": "RoleBinding",
        "metadata": {"name": "read-configmaps", "namespace": namespace},
        "roleRef": {"apiGroup": group, "kind": "Role", "name": "read-configmaps"},
        "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": namespace}],
    })  # fmt: skip


def _reflector(kubeconfig: Path, namespace: str, watch_timeout_s: int) -> tuple[
    Reflector[str], _Recording, _Names
]:  # fmt: skip
    api = HttpApi(load_config(str(kubeconfig)))
    transport = _Recording(Collection(
        api, f"/api/v1/namespaces/{namespace}/configmaps", f"configmaps in {namespace}",
        params={"labelSelector": "test=reflector"}, watch_timeout_s=watch_timeout_s,
    ))  # fmt: skip
    seen = _Names()
    return Reflector(transport, _name, seen.on_list, seen.on_event, log=_log), transport, seen


@contextlib.contextmanager
def _running(reflector: Reflector[str]) -> Iterator[None]:
    """``reflector`` running on a thread of its own, until the block ends."""
    thread = threading.Thread(target=reflector.run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        reflector.stop()
        thread.join(60)


@contextlib.contextmanager
def _granted_and_listed(
    kubeconfig: Path, admin_api: client.ApiClient, namespace: str, watch_timeout_s: int
) -> Iterator[tuple[Reflector[str], _Recording, _Names]]:
    """A reflector allowed to list and watch, running, past its first list."""
    _grant(admin_api, namespace)
    reflector, transport, seen = _reflector(kubeconfig, namespace, watch_timeout_s)
    with _running(reflector):
        until(lambda: reflector.lists == 1, timeout_s=30, message="the first list")
        yield reflector, transport, seen


def _configmap(admin_api: client.ApiClient, namespace: str, name: str) -> None:
    client.CoreV1Api(admin_api).create_namespaced_config_map(
        namespace, {"metadata": {"name": name, "labels": {"test": "reflector"}}}
    )


def test_an_expired_resource_version_in_an_error_event_relists(
    kubeconfig: Path, admin_api: client.ApiClient, namespace: str, control_plane: ControlPlane
) -> None:
    _grant(admin_api, namespace)
    _configmap(admin_api, namespace, "before")
    reflector, transport, seen = _reflector(kubeconfig, namespace, watch_timeout_s=30)
    with _running(reflector):
        until(lambda: seen.names == {"before"}, timeout_s=30, message="the first list")
        # History moves on and is compacted, and the API server's cache is gone with its
        # restart: the watch resumes from a resourceVersion that no longer exists.
        core = client.CoreV1Api(admin_api)
        for i in range(5):
            core.create_namespaced_config_map(namespace, {"metadata": {"name": f"churn-{i}"}})
        compact_etcd(control_plane)
        control_plane.restart_apiserver()
        until(lambda: reflector.gone >= 1, timeout_s=60, message="410 Gone on the resume")
        expired = [e for e in transport.events if e.get("type") == "ERROR"]
        assert expired, transport.events[-3:]
        assert expired[0]["object"]["code"] == 410
        until(lambda: reflector.lists >= 2, timeout_s=60, message="a relist after it")
        _configmap(admin_api, namespace, "after")
        until(lambda: seen.names == {"before", "after"}, timeout_s=60, message="the watch")
        assert ("ADDED", "after") in seen.events


class _ExpiringFirstList:
    """The real transport, whose first list is read in pages of one, with history compacted
    between its pages (and the API server's cache gone): the API answers the second page
    410 Gone (its continue token expired)."""

    def __init__(self, inner: Collection, compact: Callable[[], None]) -> None:
        self.inner = inner
        self.what = inner.what
        self._compact = compact
        self.expired = False

    def list(self) -> Listed:
        if self.expired:
            return self.inner.list()
        self.expired = True
        paged = {**self.inner.params, "limit": "1"}
        first = self.inner.api.get_json(self.inner.path, paged)
        self._compact()
        token = str(first["metadata"]["continue"])
        self.inner.api.get_json(self.inner.path, {**paged, "continue": token})
        raise AssertionError("the continue token outlived the compaction of its history")

    def watch(self, resource_version: str) -> Watch:
        return self.inner.watch(resource_version)


def test_an_expired_resource_version_as_a_status_relists(
    kubeconfig: Path, admin_api: client.ApiClient, namespace: str, control_plane: ControlPlane
) -> None:
    _grant(admin_api, namespace)
    for name in ("a", "b"):
        _configmap(admin_api, namespace, name)

    def compact() -> None:
        client.CoreV1Api(admin_api).create_namespaced_config_map(
            namespace, {"metadata": {"name": "history-moves-on"}}
        )
        compact_etcd(control_plane)
        # The API server serves a continue token from its cache while it can; restarted, it
        # has to read the token's resourceVersion from etcd, where it is compacted away.
        control_plane.restart_apiserver()

    reflector, recording, seen = _reflector(kubeconfig, namespace, watch_timeout_s=30)
    reflector.transport = transport = _ExpiringFirstList(recording.inner, compact)
    with _running(reflector):
        until(lambda: seen.names == {"a", "b"}, timeout_s=60, message="the relist after a 410")
        assert transport.expired
        assert (reflector.gone, reflector.failures, reflector.lists) == (1, 0, 1)


def test_a_watch_the_server_ends_resumes_from_the_last_resource_version(
    kubeconfig: Path, admin_api: client.ApiClient, namespace: str
) -> None:
    with _granted_and_listed(kubeconfig, admin_api, namespace, 2) as (reflector, transport, seen):
        for name in ("one", "two"):
            _configmap(admin_api, namespace, name)
        until(lambda: seen.names == {"one", "two"}, timeout_s=30, message="both watched")
        until(lambda: sum(k == "watch" for k, _ in transport.log) >= 3, timeout_s=30,
              message="the server ended the watch twice")  # fmt: skip
    assert reflector.lists == 1  # every end resumed, none relisted
    last = transport.log[0][1]
    for kind, rv in transport.log[1:]:
        if kind == "watch":
            assert rv == last, transport.log  # from the last resourceVersion seen, never older
        last = rv or last


def test_a_bookmark_advances_the_resource_version(
    kubeconfig: Path, admin_api: client.ApiClient, namespace: str
) -> None:
    with _granted_and_listed(kubeconfig, admin_api, namespace, 5) as (reflector, transport, _):
        listed_rv = reflector.resource_version
        # Changes elsewhere move the API's resourceVersion; only a bookmark tells this watch.
        client.CoreV1Api(admin_api).create_namespaced_config_map(
            namespace, {"metadata": {"name": "unlabelled"}}
        )

        def bookmark() -> Mapping[str, Any]:
            marks = [e for e in transport.events if e.get("type") == "BOOKMARK"]
            assert marks, "no bookmark yet"
            return marks[-1]

        mark = until(bookmark, timeout_s=60, message="a bookmark from the API")
        mark_rv = str(mark["object"]["metadata"]["resourceVersion"])
        assert int(mark_rv) > int(listed_rv)
        until(lambda: int(reflector.resource_version) >= int(mark_rv), timeout_s=10,
              message="the reflector's resourceVersion at the bookmark's")  # fmt: skip
        assert reflector.lists == 1  # resumed from the bookmark, never relisted


def test_a_refused_list_is_logged_once_and_retried_until_allowed(
    kubeconfig: Path,
    admin_api: client.ApiClient,
    namespace: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="test.reflector")
    _configmap(admin_api, namespace, "there")
    reflector, _, seen = _reflector(kubeconfig, namespace, watch_timeout_s=30)
    reflector.backoff.first_s = reflector.backoff.cap_s = 0.05
    with _running(reflector):
        until(lambda: reflector.failures >= 3, timeout_s=30, message="retries of a 403")
        refused = [r for r in caplog.records if "the API refused it (403" in r.getMessage()]
        assert len(refused) == 1, caplog.text
        assert "RBAC" in refused[0].getMessage()
        _grant(admin_api, namespace)
        until(lambda: seen.names == {"there"}, timeout_s=60, message="the list once allowed")
        assert any("allowed again" in r.getMessage() for r in caplog.records)
