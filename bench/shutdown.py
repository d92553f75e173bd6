"""How long the operator, the projector and a drainable server take to exit after SIGTERM.

On the real control plane (testenv), each as its own process, ``--rounds``
times:

- the operator (``kopf run -m kuberesolver.operator``, the project's RBAC),
  leading, while a render worker is mid-render on a template that never ends:
  from SIGTERM to exit, and to the Lease being released (its holder read by
  polling; the figure is a bound);
- the projector, watching its ConfigMap;
- a :class:`kuberesolver.server.DrainableServer` whose SIGTERM handler calls
  ``drain_and_stop()`` (no clients: the drain is immediate).

The last line is one JSON object (json, via ``_common.emit``): per process, the exit times (s) and
statuses, and whether any child process outlived the operator.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from _common import emit, median, options  # type: ignore[import-not-found]
from kubernetes import client

from testenv import ControlPlane, ensure_binaries, free_port
from testenv.kube import api_client, apply, create_namespace, service_account_token
from testenv.netns import enter_private_network, pod_ip
from testenv.operator_process import OperatorProcess
from testenv.wait import until

ROOT = Path(__file__).resolve().parent.parent
NS = "bench-shutdown"
CPU_BOMB = (
    "{% for a in range(100000) %}{% for b in range(100000) %}{% for c in range(100000) %}"
    "{% endfor %}{% endfor %}{% endfor %}"
)


def wait_exit(popen: subprocess.Popen[bytes], timeout_s: float = 60) -> tuple[float, int | None]:
    """SIGTERM, then the seconds until the process was reaped (and its status)."""
    start = time.monotonic()
    popen.send_signal(signal.SIGTERM)
    try:
        status = popen.wait(timeout_s)
    except subprocess.TimeoutExpired:
        popen.kill()
        popen.wait(10)
        return time.monotonic() - start, None
    return time.monotonic() - start, status


def lease_holder(core: client.CoordinationV1Api) -> str:
    lease = core.read_namespaced_lease("kuberesolver-operator", "kuberesolver-system")
    return str(lease.spec.holder_identity or "")


def operator_round(kubeconfig: Path, admin: client.ApiClient, k: int) -> dict[str, object]:
    leases = client.CoordinationV1Api(admin)
    custom = client.CustomObjectsApi(admin)
    name = f"slow-{k}"
    op = OperatorProcess(
        kubeconfig,
        {"KUBERESOLVER_RENDER_CPU_S": "300", "KUBERESOLVER_RENDER_TIMEOUT_MS": "300000"},
        name="bench",
        quiet=True,
    ).start()
    assert op.popen is not None
    pid = op.popen.pid
    until(lambda: lease_holder(leases) == op.identity, timeout_s=60, message="leading")
    custom.create_namespaced_custom_object(
        "kuberesolver.io", "v1alpha1", NS, "grpctargets",
        {"apiVersion": "kuberesolver.io/v1alpha1", "kind": "GrpcTarget",
         "metadata": {"name": name},
         "spec": {"service": "slow", "templates": {"a.txt": CPU_BOMB}}},
    )  # fmt: skip

    def busy() -> bool:
        for child in psutil.Process(pid).children(recursive=True):
            try:
                if sum(child.cpu_times()[:2]) > 1.0:
                    return True
            except psutil.NoSuchProcess:
                continue
        return False

    until(busy, timeout_s=60, message="a render under way")
    children = psutil.Process(pid).children(recursive=True)
    start = time.monotonic()
    op.popen.send_signal(signal.SIGTERM)
    released_s: float | None = None
    while op.popen.poll() is None and time.monotonic() - start < 60:
        if released_s is None and lease_holder(leases) == "":
            released_s = time.monotonic() - start
        time.sleep(0.01)  # polling the process and the Lease, not a wait for a condition
    exit_s = time.monotonic() - start
    status = op.popen.poll()
    if status is None:
        op.kill()
    if released_s is None and lease_holder(leases) == "":
        released_s = exit_s
    left = 0
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            left += child.is_running() and child.status() != psutil.STATUS_ZOMBIE
    custom.delete_namespaced_custom_object("kuberesolver.io", "v1alpha1", NS, "grpctargets", name)
    op.log_path.unlink(missing_ok=True)
    return {"exit_s": exit_s, "status": status, "released_s": released_s, "children_left": left}


def main() -> None:
    args = options(__doc__.split("\n")[0], rounds=(int, 5))
    ensure_binaries()
    enter_private_network()
    work = Path(tempfile.mkdtemp(prefix="bench-shutdown-"))
    results: dict[str, list[dict[str, object]]] = {"operator": [], "projector": [], "server": []}
    with ControlPlane() as cp:
        admin = api_client(cp.admin_kubeconfig)
        apply(admin, ROOT / "crds", ROOT / "manifests/namespace.yaml", ROOT / "manifests/rbac.yaml")
        create_namespace(admin, NS)
        core = client.CoreV1Api(admin)
        core.create_namespaced_service(
            NS, {"metadata": {"name": "slow"}, "spec": {"ports": [{"name": "grpc", "port": 80}]}}
        )
        core.create_namespaced_config_map(NS, {"metadata": {"name": "greeter"}, "data": {"k": "v"}})
        token = service_account_token(admin, "kuberesolver-system", "kuberesolver-operator")
        kubeconfig = cp.token_kubeconfig("operator", token, "kuberesolver-system")
        for k in range(args.rounds):
            results["operator"].append(operator_round(kubeconfig, admin, k))
            target = work / f"projected-{k}"
            env = {**os.environ, "KUBECONFIG": str(cp.admin_kubeconfig)}
            with (work / f"projector-{k}.log").open("wb") as log:
                projector = subprocess.Popen(
                    [sys.executable, "-m", "kuberesolver.projector", f"--namespace={NS}",
                     "--configmap=greeter", f"--dir={target}"],
                    env=env, stdout=log, stderr=subprocess.STDOUT,
                )  # fmt: skip
            until((target / "k").exists, timeout_s=60, message="projected")
            exit_s, status = wait_exit(projector)
            results["projector"].append({"exit_s": exit_s, "status": status})
            address = f"{pod_ip(200 + k)}:{free_port()}"
            server = subprocess.Popen(
                [sys.executable, "-m", "testenv.drain_server", address],
                stdout=subprocess.PIPE,
                cwd=ROOT,
            )
            assert server.stdout is not None
            server.stdout.readline()  # drain_server.READY
            exit_s, status = wait_exit(server)
            results["server"].append({"exit_s": exit_s, "status": status})
        admin.close()

    summary: dict[str, object] = {"rounds": args.rounds}
    for what, rounds in results.items():
        times = [float(r["exit_s"]) for r in rounds]  # type: ignore[arg-type]
        summary[what] = {
            "exit_s_median": round(median(times), 3),
            "exit_s_max": round(max(times), 3),
            "statuses": sorted({str(r["status"]) for r in rounds}),
        }
    released = [r["released_s"] for r in results["operator"] if r["released_s"] is not None]
    summary["operator_lease_released_s_max"] = (
        round(max(float(x) for x in released), 3) if released else None  # type: ignore[arg-type]
    )
    summary["operator_children_left"] = sum(
        int(r["children_left"])
        for r in results["operator"]  # type: ignore[call-overload]
    )
    emit(summary)


if __name__ == "__main__":
    main()
