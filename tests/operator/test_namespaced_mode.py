"""Namespaced mode's pure parts: the setting, the store's per-namespace lists, the plan for a
Service outside the watched namespaces, and the check that kopf's mode is the same.

The per-namespace watches themselves run on the real apiserver in
tests/integration/operator/test_namespaced_mode.py.
"""

from __future__ import annotations

import asyncio

import kopf
import pytest

from kuberesolver.core.endpointslices import service_view, slice_view
from kuberesolver.operator.handlers import _check_mode
from kuberesolver.operator.logic.reconcile import Publish, ServiceState, plan, report
from kuberesolver.operator.runtime.informer import GrpcTargetIndex, ServiceStore
from kuberesolver.operator.settings import Settings, SettingsError


def svc(ns: str, name: str) -> object:
    return service_view({"metadata": {"namespace": ns, "name": name},
                         "spec": {"ports": [{"name": "grpc", "port": 80}]}})  # fmt: skip


def test_the_setting_is_sorted_without_repeats_and_refuses_patterns() -> None:
    s = Settings.resolve(environ={"KUBERESOLVER_WATCH_NAMESPACES": " tenant, shop,tenant "})
    assert s.watch_namespaces == ("shop", "tenant")
    assert s.watches("shop")
    assert not s.watches("kube-system")
    assert Settings.resolve(environ={}).watch_namespaces == ()
    assert Settings.resolve(environ={}).watches("anything")
    with pytest.raises(SettingsError, match="'shop-\\*' is not a namespace name"):
        Settings.resolve(environ={"KUBERESOLVER_WATCH_NAMESPACES": "shop-*"})


def test_kopfs_mode_must_be_the_operators() -> None:
    namespaced = Settings.resolve(environ={"KUBERESOLVER_WATCH_NAMESPACES": "shop,tenant"})
    cluster = Settings.resolve(environ={})
    _check_mode(namespaced, clusterwide=False)
    _check_mode(cluster, clusterwide=True)
    with pytest.raises(kopf.PermanentError, match="--namespace=shop --namespace=tenant"):
        _check_mode(namespaced, clusterwide=True)
    with pytest.raises(kopf.PermanentError, match="KUBERESOLVER_WATCH_NAMESPACES is not set"):
        _check_mode(cluster, clusterwide=False)


def test_a_namespaces_list_replaces_that_namespace_only_and_syncs_once_all_are_in() -> None:
    async def run() -> None:
        woken: list[tuple[str, str]] = []
        store = ServiceStore(woken.append, namespaces=("shop", "tenant"))
        store.replace_services({("shop", "a"): svc("shop", "a")}, "shop")
        assert not store.synced("services")  # tenant not listed yet
        store.replace_services({("tenant", "b"): svc("tenant", "b")}, "tenant")
        assert store.synced("services")
        woken.clear()
        store.replace_services({}, "tenant")  # tenant's relist leaves shop's Service alone
        assert woken == [("tenant", "b")]
        assert store.lookup(("shop", "a"))[0] is not None
        view = slice_view({"metadata": {"name": "a-1"}, "addressType": "IPv4",
                           "endpoints": [{"addresses": ["10.0.0.1"]}]})  # fmt: skip
        store.replace_slices({("shop", "a-1"): (("shop", "a"), view)}, "shop")
        store.replace_slices({}, "tenant")
        assert store.synced("endpointslices")
        assert len(store.lookup(("shop", "a"))[1]) == 1
        assert store.watches("shop")
        assert not store.watches("elsewhere")

    asyncio.run(run())


def test_the_webhooks_index_replaces_per_namespace_too() -> None:
    async def run() -> None:
        index = GrpcTargetIndex(("shop", "tenant"))
        index.replace({("shop", "a"): {"service": "a"}}, "shop")
        assert not index.synced.is_set()
        index.replace({("tenant", "b"): {"service": "b"}}, "tenant")
        assert index.synced.is_set()
        index.replace({}, "tenant")
        assert index.get("shop", "a") is not None
        assert index.get("tenant", "b") is None
        assert not index.watches("elsewhere")

    asyncio.run(run())


def test_a_service_outside_the_watched_namespaces_publishes_nothing_and_says_why() -> None:
    spec = {"service": "x", "serviceNamespace": "elsewhere"}
    p = plan("stray", "tenant", spec, None, [], None, watched=("shop", "tenant"))
    assert isinstance(p, Publish)
    assert p.service is ServiceState.NOT_WATCHED
    assert p.snapshot.endpoints == ()
    assert "'elsewhere', which this operator does not watch (it watches shop, tenant" in (
        p.service_message
    )
    rep = report(p, None, None, kept=False)
    by = {c.type: c for c in rep.conditions}
    assert (by["ServiceFound"].status, by["ServiceFound"].reason) == (
        "False",
        "NamespaceNotWatched",
    )
    assert "NamespaceNotWatched" in {r for r, _ in rep.warnings}
    # The same target with every namespace watched looks for the Service as usual.
    p = plan("stray", "tenant", spec, None, [], None)
    assert isinstance(p, Publish)
    assert p.service is ServiceState.NOT_FOUND
