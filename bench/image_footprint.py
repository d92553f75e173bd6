"""What each image holds and costs: its size, its installed packages, its RSS at idle.

For the operator and projector images and the test backend and client images
(built by testenv.images, or found in its cache):

- ``size_mib``: the image unpacked (every file of its root filesystem);
- ``archive_mib``: its OCI archive (compressed layers: what ``ctr import`` reads);
- ``packages_mib``: its venv, /opt/venv (the installed packages, bytecode included);
- ``rss_idle_mib``: the resident memory of its entrypoint, run by ``buildah run``
  (runc) and left idle, once it is ready and its RSS has settled:
  - operator: ``kopf run -m kuberesolver.operator`` on a real control plane,
    under the operator's own RBAC, with no GrpcTarget, once live;
  - projector: projecting one ConfigMap (under the Role of
    manifests/examples/projector-sidecar.yaml), once the file is written;
  - backend: serving, once a Health check answers;
  - client: calling the backend once a second through a ``kubernetes:///`` target
    (a snapshot file, as kubelet mounts it), after 5 calls.

``base_mib`` is the local Debian base all four share. The last line is one
JSON object: ``{"<image>": {"size_mib": ..., "packages_mib": ..., "rss_idle_mib":
..., "archive_mib": ...}, ..., "base_mib": ...}``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from testenv.controlplane import ControlPlane, free_port, write_kubeconfig  # noqa: E402
from testenv.images import BuiltImage, ensure_images, ensure_in_storage  # noqa: E402
from testenv.images.base import ensure_base  # noqa: E402
from testenv.images.run import container, entrypoint, mounted, process_in, start  # noqa: E402
from testenv.kube import api_client, apply, apply_object, documents, service_account_token  # noqa: E402
from testenv.netns import enter_private_network  # noqa: E402
from testenv.wait import until  # noqa: E402

MIB = 2**20


def tree_bytes(path: Path) -> int:
    """The apparent size of every regular file under ``path`` (symlinks not followed)."""
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            st = os.lstat(os.path.join(dirpath, name))
            if not os.path.islink(os.path.join(dirpath, name)):
                total += st.st_size
    return total


def sizes(image: BuiltImage) -> dict[str, float]:
    with container(image.ref) as cid, mounted(cid) as root:
        return {
            "size_mib": round(tree_bytes(root) / MIB, 1),
            "packages_mib": round(tree_bytes(root / "opt/venv") / MIB, 1),
            "archive_mib": round(image.archive.stat().st_size / MIB, 1),
        }


def settled_rss_mib(pid: int, timeout_s: float = 60) -> float:
    """The RSS once six readings half a second apart lie within 2 % of each other."""
    proc = psutil.Process(pid)
    readings: list[float] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        readings.append(proc.memory_info().rss / MIB)
        last = readings[-6:]
        if len(last) == 6 and max(last) - min(last) <= 0.02 * max(last):
            return round(statistics.median(last), 1)
        time.sleep(0.5)
    print(f"RSS of {pid} still moving after {timeout_s} s: {readings[-6:]}", file=sys.stderr)
    return round(readings[-1], 1)


@contextlib.contextmanager
def running(
    ref: str,
    argv: Sequence[str],
    marker: str,
    ready: Callable[[], bool],
    env: Mapping[str, str] | None = None,
    volumes: Sequence[str] = (),
) -> Iterator[int]:
    """Run ``argv`` in the image until ``ready()``; the PID of its process."""
    with container(ref) as cid, tempfile.TemporaryFile() as log:
        proc = start(cid, argv, log, env=env, volumes=volumes, network="host")

        def check() -> bool:
            if proc.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"{marker} exited:\n{log.read().decode(errors='replace')}")
            return ready()

        try:
            until(check, timeout_s=120, interval_s=0.2, message=f"{marker} ready", retry_on=())
            yield process_in(proc, marker)
        finally:
            with contextlib.suppress(LookupError):
                os.kill(process_in(proc, marker, timeout_s=0), signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def http_ok(url: str) -> bool:
    with (
        contextlib.suppress(OSError, urllib.error.URLError),
        urllib.request.urlopen(url, timeout=2) as r,
    ):
        return bool(r.status == 200)
    return False


def readable_kubeconfig(cp: ControlPlane, token: str, namespace: str, into: Path) -> Path:
    """A token kubeconfig and the CA under ``into`` (mounted at the same path), for uid 10001."""
    into.mkdir(parents=True, exist_ok=True)
    shutil.copy(cp.ca.cert_path, into / "ca.crt")
    path = write_kubeconfig(
        into / "kubeconfig", cp.server, into / "ca.crt", "bench", token=token, namespace=namespace
    )
    for f in (into / "ca.crt", path):
        f.chmod(0o644)
    into.chmod(0o755)
    return path


def operator_rss(image: BuiltImage, cp: ControlPlane, work: Path) -> float:
    admin = api_client(cp.admin_kubeconfig)
    apply(admin, ROOT / "crds", ROOT / "manifests/namespace.yaml", ROOT / "manifests/rbac.yaml")
    token = service_account_token(admin, "kuberesolver-system", "kuberesolver-operator")
    kubeconfig = readable_kubeconfig(cp, token, "kuberesolver-system", work / "operator")
    argv = entrypoint(image.ref)
    live = next(a for a in argv if a.startswith("--liveness="))
    url = live.split("=", 1)[1].replace("0.0.0.0", "127.0.0.1")
    env = {"KUBECONFIG": str(kubeconfig), "KUBERESOLVER_METRICS_PORT": str(free_port())}
    volumes = [f"{kubeconfig.parent}:{kubeconfig.parent}:ro"]
    with running(
        image.ref, argv, "kuberesolver.operator", lambda: http_ok(url), env, volumes
    ) as pid:
        return settled_rss_mib(pid)


def projector_rss(image: BuiltImage, cp: ControlPlane, work: Path) -> float:
    admin = api_client(cp.admin_kubeconfig)
    example = ROOT / "manifests/examples/projector-sidecar.yaml"
    apply_object(admin, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo"}})
    for doc in documents(example):
        if doc["kind"] in ("ServiceAccount", "Role", "RoleBinding"):
            apply_object(admin, doc, "demo")
    data = {"endpoints.json": json.dumps({"version": 1, "revision": 1, "endpoints": []})}
    apply_object(
        admin,
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "greeter"}, "data": data},
        "demo",
    )
    token = service_account_token(admin, "demo", "greeter-client")
    kubeconfig = readable_kubeconfig(cp, token, "demo", work / "projector")
    out = work / "projected"
    out.mkdir()
    out.chmod(0o777)
    argv = [
        *entrypoint(image.ref), "--configmap", "greeter", "--namespace", "demo",
        "--dir", "/projected", "--kubeconfig", str(kubeconfig),
    ]  # fmt: skip
    volumes = [f"{kubeconfig.parent}:{kubeconfig.parent}:ro", f"{out}:/projected"]
    ready = (out / "endpoints.json").is_file
    with running(image.ref, argv, "kuberesolver-projector", ready, {}, volumes) as pid:
        return settled_rss_mib(pid)


def backend_and_client_rss(backend: BuiltImage, client: BuiltImage, work: Path) -> dict[str, float]:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    port = free_port()

    def serving() -> bool:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            try:
                reply = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=1
                )
            except grpc.RpcError:
                return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    found: dict[str, float] = {}
    env = {"PORT": str(port), "POD_NAME": "bench"}
    with running(backend.ref, entrypoint(backend.ref), "/app/backend.py", serving, env) as pid:
        found["backend"] = settled_rss_mib(pid)
        log = work / "client.log"
        snapshots = work / "snapshots"
        subprocess.run(
            [sys.executable, "-m", "kuberesolver", "snapshot", str(snapshots), "greeter.demo",
             f"127.0.0.1:{port}"],
            check=True,
            capture_output=True,
        )  # fmt: skip
        subprocess.run(["chmod", "-R", "a+rX", str(snapshots)], check=True)
        env = {
            "TARGET": "kubernetes:///greeter.demo:grpc",
            "KUBERESOLVER_DIR": "/snapshots",
            "RATE": "1",
        }
        with contextlib.ExitStack() as stack:
            cid = stack.enter_context(container(client.ref))
            out = stack.enter_context(log.open("wb"))
            volumes = [f"{snapshots}:/snapshots:ro"]
            proc = start(cid, entrypoint(client.ref), out, env=env, volumes=volumes, network="host")
            stack.callback(proc.wait, 30)
            stack.callback(lambda: os.kill(process_in(proc, "/app/client.py"), signal.SIGTERM))
            until(
                lambda: log.read_text().count('"ok": true') >= 5,
                timeout_s=60,
                message="5 calls answered",
            )
            found["client"] = settled_rss_mib(process_in(proc, "/app/client.py"))
    return found


def main() -> None:
    enter_private_network()  # the servers' ports exist only in our namespace
    t0 = time.monotonic()
    images = ensure_images()
    build_s = time.monotonic() - t0
    for image in images.values():
        ensure_in_storage(image)
    result: dict[str, Any] = {name: sizes(image) for name, image in images.items()}
    base = ensure_base()
    with container(base.ref) as cid, mounted(cid) as root:
        result["base_mib"] = round(tree_bytes(root) / MIB, 1)
    with tempfile.TemporaryDirectory(prefix="kuberesolver-footprint-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)
        rss = backend_and_client_rss(images["backend"], images["client"], work)
        with ControlPlane() as cp:
            rss["operator"] = operator_rss(images["operator"], cp, work)
            rss["projector"] = projector_rss(images["projector"], cp, work)
    for name, mib in rss.items():
        result[name]["rss_idle_mib"] = mib
    result["ensure_images_s"] = round(build_s, 1)
    print(json.dumps(result, sort_keys=True), flush=True)


if __name__ == "__main__":
    main()
