"""Direct mode out of cluster: the client reads a kubeconfig as ``kubectl`` does.

The kubeconfig holds the token of the client's ServiceAccount, bound to the
shipped Role (manifests/examples/direct-mode-rbac.yaml); it is found through
the ``kubeconfig=`` argument, ``$KUBECONFIG`` (a list, merged) or
``~/.kube/config``, in that order.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

import kuberesolver
from kuberesolver.direct import unregister
from testenv import ControlPlane
from testenv.controlplane import write_kubeconfig
from testenv.wait import until
from tests.integration.direct.world import Pods, reached

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("found_by", ["argument", "KUBECONFIG", "home"])
def test_a_kubeconfig_for_the_shipped_role_is_read_as_kubectl_reads_it(
    control_plane: ControlPlane,
    token_file: Path,
    pods: Pods,
    namespace: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    found_by: str,
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)  # out of cluster
    monkeypatch.delenv("KUBECONFIG", raising=False)
    home = tmp_path / "home"
    (home / ".kube").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    path = home / ".kube" / "config" if found_by == "home" else tmp_path / "client.kubeconfig"
    write_kubeconfig(
        path,
        control_plane.server,
        control_plane.ca.cert_path,
        "greeter-direct-client",
        token=token_file.read_text(),
        namespace=namespace,
    )
    if found_by == "KUBECONFIG":  # a list, as kubectl takes it; a missing file is skipped
        monkeypatch.setenv("KUBECONFIG", os.pathsep.join([str(tmp_path / "absent"), str(path)]))
    builder = kuberesolver.Builder(kubeconfig=path if found_by == "argument" else None)
    kuberesolver.register(builder)
    try:
        pods.start(2)
        ips = {pods.add(0), pods.add(1)}
        with kuberesolver.insecure_channel(f"kubernetes:///greeter.{namespace}:grpc") as channel:
            assert builder.client().host == control_plane.server
            seen: set[str] = set()
            until(
                lambda: seen.update(reached(channel, 10)) or seen == ips,
                timeout_s=60,
                message="both pods reached through the API, on the kubeconfig's credentials",
            )
    finally:
        unregister("kubernetes")
        with contextlib.suppress(OSError):  # made by the builder (unless it failed): close it
            builder.client().close()


def test_no_kubeconfig_out_of_cluster_says_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"\.kube/config does not exist"):
        kuberesolver.Builder().client()
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match=r"nope does not exist \(from \$KUBECONFIG"):
        kuberesolver.Builder().client()
