"""Every API request has a deadline: against a host that accepts TCP and never answers,
direct mode and the projector give up after their timeout, with ONE request sent
(no retry hidden inside the HTTP client) and one log line that names the host.

The timeouts are shortened to 1 s here; the defaults are 30 s. The bound checked
on the time taken is the semantic one (one timeout, not four), far from noise.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from pathlib import Path

import pytest

from kuberesolver.client.sources.api.watcher import ApiWatcher
from kuberesolver.client.target import parse_target
from kuberesolver.core.backoff import Backoff
from kuberesolver.kube.client import new_insecure_k8s_client
from testenv.silent import SilentServer
from testenv.wait import until

TIMEOUT_S = 1.0


def test_direct_mode_gives_up_after_one_silent_request_and_names_the_host(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with SilentServer() as api:
        k8s = new_insecure_k8s_client(api.url)
        target = parse_target("kubernetes:///greeter.demo:grpc")
        watcher = ApiWatcher(k8s, target, lambda _: None, timeout_s=TIMEOUT_S)
        caplog.set_level(logging.ERROR, "kuberesolver.direct")
        start = time.monotonic()
        with pytest.raises(OSError, match="timed out"):
            watcher.sync()
        took = time.monotonic() - start
        k8s.close()
        assert api.requests == 1, "a request was retried behind the caller's back"
        assert took < 2 * TIMEOUT_S
    lines = [r.getMessage() for r in caplog.records if r.name == "kuberesolver.direct"]
    assert len(lines) == 1, lines
    assert api.url in lines[0]


def test_the_projector_gives_up_after_one_silent_request_and_names_the_host(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from kuberesolver.kube.credentials import ApiConfig
    from kuberesolver.kube.http import HttpApi
    from kuberesolver.projector.configmap_watch import ConfigMapProjector, configmap_transport

    with SilentServer() as api:
        http = HttpApi(ApiConfig(server=api.url), timeout_s=TIMEOUT_S)
        projector = ConfigMapProjector(
            configmap_transport(http, "demo", "greeter"), tmp_path / "out"
        )
        # The pause after the failure is drawn (seeded) near a minute: a loaded machine
        # checking late sees the one request, not the retry that follows a short pause.
        projector.reflector.backoff = Backoff(first_s=30.0, cap_s=60.0, rng=random.Random(0))
        caplog.set_level(logging.WARNING, "kuberesolver.projector")
        start = time.monotonic()
        runner = threading.Thread(target=projector.run, daemon=True)
        runner.start()
        until(lambda: projector.reflector.failures >= 1, timeout_s=30, message="a failure")
        took = time.monotonic() - start
        projector.stop()
        assert api.requests == 1, "a request was retried behind the caller's back"
        assert took < 2 * TIMEOUT_S
        runner.join(10)
        assert not runner.is_alive()
        http.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "kuberesolver.projector"]
    assert lines, "no log line"
    assert api.url in lines[0]
    assert "ReadTimeout" in lines[0]


def test_the_shared_api_clients_have_no_hidden_retries(tmp_path: Path) -> None:
    from kuberesolver.kube.kubeconfig import load_client

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: x\n"
        "clusters: [{name: c, cluster: {server: 'http://127.0.0.1:1'}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: x, context: {cluster: c, user: u, namespace: demo}}]\n"
    )
    api, namespace = load_client(str(kubeconfig))
    assert namespace == "demo"
    assert api.configuration.retries is False
    api.close()
