"""The webhook's handler keeps its deadline and never raises: a Pod it cannot serve is
admitted unchanged, with a warning. Against real sockets (a silent API host, a closed
port), through the operator's own API client."""

from __future__ import annotations

import time
from typing import Any

import kopf
from kubernetes import client

from kuberesolver.kube.kubeconfig import no_hidden_retries
from kuberesolver.operator.runtime.informer import GrpcTargetIndex
from kuberesolver.operator.runtime.kube import Kube
from kuberesolver.operator.webhook.admission import pod_mutate
from testenv.controlplane import free_port
from testenv.silent import SilentServer


def _kube(host: str) -> Kube:
    configuration = client.Configuration()
    configuration.host = host
    return Kube(client.ApiClient(no_hidden_retries(configuration)), workers=2)


def _pod(targets: str) -> kopf.Body:
    return kopf.Body(
        {
            "metadata": {
                "name": "p",
                "namespace": "app",
                "annotations": {"kuberesolver.io/targets": targets},
            },
            "spec": {"containers": [{"name": "c", "image": "x"}]},
        }
    )


async def _admit(targets: str, memo: dict[str, Any]) -> tuple[kopf.Patch, list[str], float]:
    patch = kopf.Patch()
    warnings: list[str] = []
    start = time.monotonic()
    await pod_mutate(_pod(targets), patch, warnings, kopf.Memo(memo))
    return patch, warnings, time.monotonic() - start


async def test_a_silent_api_costs_at_most_the_deadline_and_admits_unchanged() -> None:
    with SilentServer() as api:
        kube = _kube(api.url)
        try:
            memo = {"webhook_kube": kube, "webhook_deadline_s": 0.3}
            patch, warnings, took = await _admit("greeter", memo)
        finally:
            kube.close()
    assert not patch.fns
    assert warnings == [
        "kuberesolver.io/targets: the GrpcTargets could not be read within 300 ms; "
        "the Pod is left unchanged"
    ]
    assert took < 5, "the admission outlived its deadline"  # the old code waited 30 s or more
    assert api.requests == 1


async def test_an_unreachable_api_is_a_warning_not_an_error() -> None:
    kube = _kube(f"http://127.0.0.1:{free_port()}")  # nothing listens there
    try:
        patch, warnings, _ = await _admit("greeter", {"webhook_kube": kube})
    finally:
        kube.close()
    assert not patch.fns
    assert len(warnings) == 1
    assert "could not be read (no answer)" in warnings[0]


async def test_names_from_the_watch_cost_no_request() -> None:
    index = GrpcTargetIndex()
    index.replace({("app", "greeter"): {"service": "greeter"}})
    with SilentServer() as api:
        kube = _kube(api.url)
        try:
            memo = {"webhook_kube": kube, "webhook_targets": index, "webhook_deadline_s": 5.0}
            patch, warnings, _ = await _admit("greeter", memo)
        finally:
            kube.close()
    assert warnings == []
    assert len(patch.fns) == 1
    assert api.requests == 0


async def test_bad_names_cost_no_request() -> None:
    with SilentServer() as api:
        kube = _kube(api.url)
        try:
            memo = {"webhook_kube": kube, "webhook_deadline_s": 5.0}
            patch, warnings, _ = await _admit("otherns/secret," * 40_000, memo)
        finally:
            kube.close()
    assert not patch.fns
    assert len(warnings) == 1
    assert api.requests == 0


async def test_a_pod_outside_the_watched_namespaces_costs_no_request() -> None:
    """Namespaced mode: its GrpcTargets are not readable there (no Role), so no LIST."""
    index = GrpcTargetIndex(("shop",))
    index.replace({("shop", "greeter"): {"service": "greeter"}}, "shop")
    with SilentServer() as api:
        kube = _kube(api.url)
        try:
            memo = {"webhook_kube": kube, "webhook_targets": index, "webhook_deadline_s": 5.0}
            patch, warnings, _ = await _admit("greeter", memo)  # the Pod is in "app"
        finally:
            kube.close()
    assert not patch.fns
    assert warnings == [
        "kuberesolver.io/targets: namespace 'app' is not watched by kuberesolver "
        "(it watches shop); the Pod is left unchanged"
    ]
    assert api.requests == 0
