"""A watch the API refuses (a right missing from the operator's RBAC): one ERROR line that
names the resource and the right, however often it is retried, until it is allowed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading

import pytest
from kubernetes import client

from kuberesolver.operator.runtime.informer import ServiceStore, pod_reflectors
from testenv.controlplane import ControlPlane
from testenv.kube import api_client, apply_object, service_account_token
from testenv.wait import until

REFUSED = "the API refused it"


def test_a_refused_pod_watch_is_one_line_until_it_is_allowed(
    control_plane: ControlPlane,
    admin_api: client.ApiClient,
    namespace: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The namespace's default ServiceAccount: no right to list Pods.
    token = service_account_token(admin_api, namespace, "default")
    api = api_client(control_plane.token_kubeconfig(f"nobody-{namespace}", token, namespace))
    store = ServiceStore(lambda key: None, wake_pods=lambda key: None, namespaces=[namespace])
    loop = asyncio.new_event_loop()
    pumping = threading.Thread(target=loop.run_forever, daemon=True)
    pumping.start()
    (reflector,) = pod_reflectors(api, store, loop)
    caplog.set_level(logging.INFO, logger="kuberesolver.operator")
    reflector.start()
    try:
        # Refused, retried (1 s, 2 s, ... apart), and said once.
        until(lambda: reflector.errors >= 3, timeout_s=30, interval_s=0.2, message="3 refusals")
        assert reflector.refused == "403 Forbidden"
        (line,) = [r.getMessage() for r in caplog.records if REFUSED in r.getMessage()]
        assert line.startswith(f"pods in {namespace}: {REFUSED} (403 Forbidden): "), line
        assert "grant list and watch on pods" in line, line
        assert not store.synced("pods")

        # Allowed: the next list goes through, and says so.
        for kind in ("Role", "RoleBinding"):
            apply_object(admin_api, grant(kind, namespace))
        until(lambda: store.synced("pods"), timeout_s=60, interval_s=0.2, message="a list")
        assert reflector.refused is None
        assert any(r.getMessage() == f"pods in {namespace}: allowed again" for r in caplog.records)
    finally:
        reflector.stop()
        loop.call_soon_threadsafe(loop.stop)
        pumping.join(5)
        with contextlib.suppress(Exception):
            loop.close()
        api.close()  # type: ignore[no-untyped-call]


def grant(kind: str, namespace: str) -> dict[str, object]:
    """A Role to list and watch Pods, or its binding to the default ServiceAccount."""
    meta = {"name": "pods-reader", "namespace": namespace}
    if kind == "Role":
        rules = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]}]
        return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": meta,
                "rules": rules}  # fmt: skip
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": kind,
        "metadata": meta,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pods-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": namespace}],
    }
