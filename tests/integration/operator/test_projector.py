"""The projector against the real apiserver, with only get/list/watch on its one ConfigMap."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from kuberesolver.projector import read_dir
from testenv import ControlPlane
from testenv.kube import apply_object, documents, service_account_token
from testenv.wait import until

ROOT = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.integration


@pytest.fixture
def client_kubeconfig(
    control_plane: ControlPlane, admin_api: client.ApiClient, namespace: str
) -> Path:
    """The example sidecar's ServiceAccount and Role (ConfigMap "greeter" only)."""
    for doc in documents(ROOT / "manifests/examples/projector-sidecar.yaml"):
        if doc["kind"] == "Pod":
            continue
        doc = {**doc, "metadata": {**doc["metadata"], "namespace": namespace}}
        if doc["kind"] == "RoleBinding":  # its subject names the example's namespace too
            doc["subjects"] = [{**s, "namespace": namespace} for s in doc["subjects"]]
        apply_object(admin_api, doc)
    token = service_account_token(admin_api, namespace, "greeter-client")
    return control_plane.token_kubeconfig(f"projector-{namespace}", token, namespace)


@pytest.fixture
def projector(
    client_kubeconfig: Path, namespace: str, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], Path, Path]]:
    target = tmp_path / "mount" / f"greeter.{namespace}"
    log = tmp_path / "projector.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kuberesolver.projector", "--configmap=greeter",
             f"--dir={target}"],
            env={**os.environ, "KUBECONFIG": str(client_kubeconfig)},
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    yield proc, target, log
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


def test_projects_updates_keeps_files_on_delete_and_stops_cleanly(
    admin_api: client.ApiClient,
    namespace: str,
    projector: tuple[subprocess.Popen[bytes], Path, Path],
) -> None:
    proc, target, log = projector
    core = client.CoreV1Api(admin_api)
    core.create_namespaced_config_map(
        namespace,
        {"metadata": {"name": "greeter"}, "data": {"endpoints.json": "{}\n", "a.txt": "1"},
         "binaryData": {"blob": "AAEC"}},
    )  # fmt: skip
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "other"}, "data": {"x": "y"}}
    )

    def files() -> dict[str, bytes]:
        got = read_dir(target)
        assert got, "nothing projected yet"
        return got

    got = until(files, timeout_s=60, message="the first projection")
    assert got == {"endpoints.json": b"{}\n", "a.txt": b"1", "blob": b"\x00\x01\x02"}
    assert (target / "..data").is_symlink()
    assert os.readlink(target / "a.txt") == "..data/a.txt"

    core.patch_namespaced_config_map(
        "greeter", namespace, {"data": {"a.txt": "2", "endpoints.json": "{}\n"}}
    )
    until(lambda: read_dir(target).get("a.txt") == b"2", timeout_s=60, message="the update")

    core.replace_namespaced_config_map(
        "greeter", namespace, {"metadata": {"name": "greeter"}, "data": {"only": "this"}}
    )
    until(lambda: read_dir(target) == {"only": b"this"}, timeout_s=60, message="keys removed")
    assert not (target / "a.txt").exists()

    core.delete_namespaced_config_map("greeter", namespace)
    until(
        lambda: "keeping the last files" in log.read_text(),
        timeout_s=60,
        message="the delete noticed",
    )
    assert read_dir(target) == {"only": b"this"}

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0, log.read_text()
    assert "403" not in log.read_text()


def test_once_mode(client_kubeconfig: Path, admin_api: client.ApiClient, namespace: str,
                   tmp_path: Path) -> None:  # fmt: skip
    argv = [sys.executable, "-m", "kuberesolver.projector", "--configmap=greeter",
            f"--namespace={namespace}", f"--dir={tmp_path / 'd'}", "--once"]  # fmt: skip
    env = {**os.environ, "KUBECONFIG": str(client_kubeconfig)}
    assert subprocess.run(argv, env=env, capture_output=True, check=False).returncode == 1
    client.CoreV1Api(admin_api).create_namespaced_config_map(
        namespace, {"metadata": {"name": "greeter"}, "data": {"k": "v"}}
    )
    assert subprocess.run(argv, env=env, capture_output=True, check=False).returncode == 0
    assert read_dir(tmp_path / "d") == {"k": b"v"}


def test_a_refused_projector_says_which_rights_it_lacks_then_projects_once_granted(
    control_plane: ControlPlane, admin_api: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    """A ServiceAccount without the example's Role: one ERROR line naming the ConfigMap and
    the rights; the example Role and RoleBinding (projector-rbac.yaml) then let it project."""
    core = client.CoreV1Api(admin_api)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "greeter-client"}})
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "greeter"}, "data": {"endpoints.json": "{}\n"}}
    )
    token = service_account_token(admin_api, namespace, "greeter-client")
    kubeconfig = control_plane.token_kubeconfig(f"refused-{namespace}", token, namespace)
    target, log = tmp_path / f"greeter.{namespace}", tmp_path / "projector.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kuberesolver.projector", "--configmap=greeter",
             f"--namespace={namespace}", f"--dir={target}"],
            env={**os.environ, "KUBECONFIG": str(kubeconfig)},
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        line = until(
            lambda: next(
                iter(ln for ln in log.read_text().splitlines() if "refused it" in ln), None
            ),
            timeout_s=60,
            message="the refusal logged",
        )
        assert "ERROR" in line
        assert f"ConfigMap {namespace}/greeter: the API refused it (403" in line
        assert (
            f"this Pod's ServiceAccount needs get, list and watch on ConfigMap greeter in "
            f"namespace {namespace}" in line
        )
        assert "manifests/examples/projector-rbac.yaml" in line
        assert not target.exists()
        for doc in documents(ROOT / "manifests/examples/projector-rbac.yaml"):
            doc = {**doc, "metadata": {**doc["metadata"], "namespace": namespace}}
            if doc["kind"] == "RoleBinding":
                doc["subjects"] = [{**s, "namespace": namespace} for s in doc["subjects"]]
            if doc["kind"] != "ServiceAccount":
                apply_object(admin_api, doc)
        until(lambda: read_dir(target) == {"endpoints.json": b"{}\n"}, timeout_s=90,
              message="the projection once granted")  # fmt: skip
        assert len([ln for ln in log.read_text().splitlines() if "refused it" in ln]) == 1
        assert "allowed again" in log.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
