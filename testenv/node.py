"""A real node for tests: containerd and kubelet v1.35, running real Pods.

    with ControlPlane(real_nodes=True) as cp, Node(cp, 1) as node:
        ...   # Pods scheduled to node.name run in containers

What confines a node (so that stopping it leaves nothing behind):

- **network:** containerd and kubelet are children of the test process, so they
  live in its private network namespace (testenv/netns.py). Pods get addresses
  from the node's own /24 (testenv/node_config.py) on a bridge whose gateway
  address is the node's IP; none of it exists outside the tests' namespace.
- **mounts:** both run in a private mount namespace of their own (``unshare
  --mount``; kubelet joins it with ``nsenter --mount``, never ``ip netns exec``,
  which remounts /sys and hides the cgroup mounts from kubelet). Every mount
  they make (volumes, container root filesystems, the Pods' network
  namespaces) exists only there and is gone with its last process. ``/run``,
  ``/var/lib`` and ``/var/log`` are tmpfs in it (shim sockets, the CNI cache,
  kubelet's log links), and kubelet's kernel tunables are files of our own
  over ``/proc/sys``, so it writes no machine-wide sysctl.
- **processes:** every process of the node (containerd, kubelet, the shims,
  the containers) is in that mount namespace; :meth:`Node.stop` ends them all,
  and :meth:`Node.leftovers` checks with ``ps``, ``mount`` and ``ip``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from kubernetes import client

from testenv.build import ensure_binaries
from testenv.controlplane import (
    ControlPlane,
    ControlPlaneError,
    Started,
    _http_get,
    _Process,
    free_port,
)
from testenv.kube import api_client
from testenv.netns import in_private_network
from testenv.node_config import (
    KUBELET_SYSCTLS,
    NodeLayout,
    cni_conflist,
    containerd_config,
    kubelet_config,
)
from testenv.oci_image import Image, write_archive
from testenv.wait import WaitTimeout, until

__all__ = ["NODE_TOOLS", "Node", "NodeImages", "node_images"]

log = logging.getLogger("testenv")
NODE_TOOLS = ("containerd", "containerd-shim-runc-v2", "runc", "ctr", "unshare", "nsenter", "ip")
CNI_PLUGINS = Path("/usr/lib/cni")
NODES_ROLE_BINDING = "testenv:nodes"
RBAC = "rbac.authorization.k8s.io"
HOST_TMPFS = ("/run", "/var/lib", "/var/log")
"""Tmpfs in a node's mount namespace: what containerd, the shims, the CNI plugins and
kubelet keep there (sockets, caches, log links) never reaches the host."""


class NodeImages:
    """The node's two images, from build.sh's static programs: the sandbox's pause and
    the test HTTP server (testenv/gomod/node-images)."""

    def __init__(self, pause: Image, testserver: Image) -> None:
        self.pause = pause
        self.testserver = testserver

    def all(self) -> tuple[Image, ...]:
        return (self.pause, self.testserver)


def node_images(bin_dir: Path) -> NodeImages:
    """Pack (once) and return the node images built from ``bin_dir``'s programs."""
    directory = bin_dir.parent / "images"
    return NodeImages(
        write_archive(bin_dir / "pause", "kuberesolver.local/testenv/pause", directory),
        write_archive(bin_dir / "testserver", "kuberesolver.local/testenv/testserver", directory),
    )


def _missing_tools(bin_dir: Path) -> list[str]:
    missing = [t for t in NODE_TOOLS if shutil.which(t) is None]
    missing += [str(CNI_PLUGINS / p) for p in ("bridge", "host-local", "loopback")
                if not (CNI_PLUGINS / p).is_file()]  # fmt: skip
    missing += [str(bin_dir / b) for b in ("kubelet", "pause", "testserver")
                if not (bin_dir / b).is_file()]  # fmt: skip
    return missing


def _run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def _mount_ns(pid: int) -> str | None:
    with contextlib.suppress(OSError):
        return os.readlink(f"/proc/{pid}/ns/mnt")
    return None


def _read(path: Path) -> str:
    with contextlib.suppress(OSError):
        return path.read_text()
    return ""


def _pids_in_mount_ns(ns: str) -> list[int]:
    """Every process whose mount namespace is ``ns`` (e.g. ``mnt:[4026532281]``)."""
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and _mount_ns(int(p)) == ns]


class Node(Started):
    """Node ``index``: its containerd and kubelet, under ``<control plane workdir>/nodes``.

    ``start()`` returns once the Node is Ready and schedulable (kubelet's
    not-ready taint lifted). ``stop()`` drains it, stops everything, deletes the
    Node object and removes its bridge; ``leftovers()`` then says what, if
    anything, is left. Both are idempotent; the object is a context manager.
    """

    def __init__(self, control_plane: ControlPlane, index: int) -> None:
        self.control_plane = control_plane
        self.layout = NodeLayout.of(control_plane.workdir / "nodes" / f"worker-{index}", index)
        self.name = self.layout.name
        self.ip = self.layout.ip
        self.containerd: _Process | None = None
        self.kubelet: _Process | None = None
        self.mount_ns: str | None = None
        self.images: NodeImages | None = None
        self.healthz_port = 0
        self.started_s = 0.0
        """Seconds from start() (directories, containerd, images, kubelet) to the Node's Ready."""
        self._netns_before: set[str] = set()
        self._container_ids: set[str] = set()

    # -- lifecycle -----------------------------------------------------------

    def start(self, timeout_s: float = 120.0) -> None:
        if self.containerd is not None:
            return
        if not in_private_network():
            raise ControlPlaneError(
                "a test node programs the network namespace it runs in: start it only after "
                "testenv.netns.enter_private_network()"
            )
        hidden = [d for d in HOST_TMPFS if self.layout.root.resolve().is_relative_to(d)]
        if hidden:
            raise ControlPlaneError(
                f"a node's directory {self.layout.root} must not lie under {hidden[0]}, "
                "which is a tmpfs of its own inside the node"
            )
        bins = ensure_binaries()
        missing = _missing_tools(bins)
        if missing:
            raise ControlPlaneError(
                f"the test node needs {', '.join(missing)}: apt-get install containerd runc "
                "containernetworking-plugins, then run testenv/build.sh"
            )
        self.images = node_images(bins)
        self._netns_before = set(self._netns_names())
        t0 = time.monotonic()
        try:
            self._prepare()
            self._start_containerd(timeout_s)
            self._import_images()
            self._start_kubelet(bins)
            t_kubelet = time.monotonic()
            self._wait_ready(timeout_s)
        except BaseException:
            self.stop()
            raise
        self.started_s = time.monotonic() - t0
        log.info(
            "node %s Ready %.1f s after start (kubelet: %.1f s)",
            self.name,
            self.started_s,
            time.monotonic() - t_kubelet,
        )

    def _prepare(self) -> None:
        """Directories, configs, sysctl files, the bridge and the Node RBAC."""
        layout = self.layout
        assert self.images is not None
        for d in ("containerd", "cni/net.d", "cni/ipam", "kubelet", "pod-logs",
                  "volume-plugins", "sysctl", "logs"):  # fmt: skip
            (layout.root / d).mkdir(parents=True, exist_ok=True)
        (layout.root / "containerd.toml").write_text(
            containerd_config(layout, self.images.pause.name)
        )
        (layout.root / "cni/net.d/10-bridge.conflist").write_text(cni_conflist(layout))
        for key, value in KUBELET_SYSCTLS.items():
            (layout.sysctl_dir / key).write_text(f"{value}\n")
        # The bridge carries the node's IP from the start: kubelet binds to it and
        # reports it, before any Pod made the CNI plugin create it.
        if not self._link_exists():
            _run("ip", "link", "add", layout.bridge, "type", "bridge")
            _run("ip", "addr", "add", f"{layout.ip}/24", "dev", layout.bridge)
        _run("ip", "link", "set", layout.bridge, "up")
        self._bind_node_role()

    def _link_exists(self) -> bool:
        done = subprocess.run(["ip", "link", "show", self.layout.bridge], capture_output=True)
        return done.returncode == 0

    def _bind_node_role(self) -> None:
        """Kubelets' group ``system:nodes`` gets the ``system:node`` ClusterRole (RBAC only:
        the test apiserver runs without the Node authorizer)."""
        api = api_client(self.control_plane.admin_kubeconfig)
        try:
            client.RbacAuthorizationV1Api(api).create_cluster_role_binding(
                client.V1ClusterRoleBinding(
                    metadata=client.V1ObjectMeta(name=NODES_ROLE_BINDING),
                    role_ref=client.V1RoleRef(
                        api_group=RBAC, kind="ClusterRole", name="system:node"
                    ),
                    subjects=[
                        client.RbacV1Subject(api_group=RBAC, kind="Group", name="system:nodes")
                    ],
                )
            )
        except client.ApiException as exc:
            if exc.status != 409:
                raise
        finally:
            api.close()  # type: ignore[no-untyped-call]

    def _start_containerd(self, timeout_s: float) -> None:
        layout = self.layout
        mounts = [f"mount -t tmpfs -o mode=0755 testenv-node {d}" for d in HOST_TMPFS]
        mounts += [
            f"mount --bind {layout.sysctl_dir / key} /proc/sys/{key.replace('.', '/')}"
            for key in KUBELET_SYSCTLS
        ]
        script = " && ".join(
            ["set -e", *mounts, f"exec containerd --config {layout.root / 'containerd.toml'}"]
        )
        self.containerd = _Process(
            f"containerd-{self.name}",
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
            layout.logs / "containerd.log",
        )
        self.containerd.wait_until(
            lambda: self._ctr_ok("version"), f"containerd of {self.name}", timeout_s
        )
        self.mount_ns = _mount_ns(self.containerd.popen.pid)

    def _ctr(self, *args: str) -> subprocess.CompletedProcess[str]:
        argv = ["ctr", "--address", str(self.layout.containerd_socket), "-n", "k8s.io", *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)

    def _ctr_ok(self, *args: str) -> bool:
        return self.layout.containerd_socket.exists() and self._ctr(*args).returncode == 0

    def _import_images(self) -> None:
        assert self.images is not None
        for image in self.images.all():
            done = self._ctr("images", "import", str(image.archive))
            if done.returncode != 0:
                raise ControlPlaneError(f"ctr images import {image.archive}:\n{done.stderr}")

    def _start_kubelet(self, bins: Path) -> None:
        layout = self.layout
        cp = self.control_plane
        kubeconfig = cp.cert_kubeconfig(
            f"kubelet-{self.name}", f"kubelet-{self.name}", f"system:node:{self.name}",
            organizations=("system:nodes",),
        )  # fmt: skip
        config = layout.root / "kubelet.yaml"
        self.healthz_port = free_port()
        config.write_text(kubelet_config(layout, healthz_port=self.healthz_port))
        assert self.containerd is not None
        self.kubelet = _Process(
            f"kubelet-{self.name}",
            [
                "nsenter",
                f"--mount=/proc/{self.containerd.popen.pid}/ns/mnt",
                "--",
                str(bins / "kubelet"),
                f"--config={config}",
                f"--kubeconfig={kubeconfig}",
                f"--root-dir={layout.kubelet_dir}",
                f"--cert-dir={layout.kubelet_dir / 'pki'}",
                f"--hostname-override={self.name}",
                f"--node-ip={layout.ip}",
                "--v=1",
            ],
            layout.logs / "kubelet.log",
        )

    def _wait_ready(self, timeout_s: float) -> None:
        assert self.kubelet is not None
        api = api_client(self.control_plane.admin_kubeconfig)
        core = client.CoreV1Api(api)

        def ready() -> bool:
            if not self.containerd or not self.containerd.alive():
                raise ControlPlaneError(f"containerd exited:\n{self.containerd_log_tail()}")
            try:
                node = core.read_node(self.name).to_dict()
            except client.ApiException:
                return False
            conditions = {c["type"]: c["status"] for c in node["status"]["conditions"] or []}
            taints = [t["key"] for t in node["spec"]["taints"] or []]
            return (
                conditions.get("Ready") == "True" and "node.kubernetes.io/not-ready" not in taints
            )

        try:
            self.kubelet.wait_until(ready, f"Node {self.name} to be Ready", timeout_s)
        finally:
            api.close()  # type: ignore[no-untyped-call]

    # -- stopping ------------------------------------------------------------

    def stop(self) -> None:
        """Drain, stop kubelet and containerd, end what is left of the node, clean up."""
        if self.containerd is not None or self.kubelet is not None:
            with contextlib.suppress(Exception):
                self._drain()
            if self.containerd is not None and self.containerd.alive():
                self._container_ids |= set(self._ctr("containers", "ls", "-q").stdout.split())
            for proc in (self.kubelet, self.containerd):
                if proc is not None:
                    proc.stop()
            self.kubelet = self.containerd = None
            self._end_processes()
            self._remove_cgroups()
            with contextlib.suppress(Exception):
                self._delete_node_object()
        if self._link_exists():  # also after a start() that failed before containerd ran
            _run("ip", "link", "del", self.layout.bridge)

    def _drain(self, timeout_s: float = 60.0) -> None:
        """Cordon, delete the node's Pods, and wait for containerd to run no task.

        Through kubelet, a Pod's sandbox is stopped properly: CNI releases its
        address and its network namespace is removed.
        """
        api = api_client(self.control_plane.admin_kubeconfig)
        core = client.CoreV1Api(api)
        try:
            core.patch_node(self.name, {"spec": {"unschedulable": True}})
            pods = core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={self.name}")
            for pod in pods.to_dict()["items"]:
                with contextlib.suppress(client.ApiException):
                    meta = pod["metadata"]
                    core.delete_namespaced_pod(
                        meta["name"], meta["namespace"], grace_period_seconds=0
                    )
            self._container_ids |= set(self._ctr("containers", "ls", "-q").stdout.split())
            until(
                lambda: not self.running_tasks(),
                timeout_s=timeout_s,
                interval_s=0.2,
                message=f"containerd of {self.name} to run no task",
            )
        finally:
            api.close()  # type: ignore[no-untyped-call]

    def running_tasks(self) -> list[str]:
        """The ids of containerd's running tasks (containers), from ``ctr tasks ls``."""
        lines = self._ctr("tasks", "ls").stdout.splitlines()[1:]
        return [f.split()[0] for f in lines if "RUNNING" in f.split()]

    def processes(self) -> list[int]:
        """The node's processes: those in its mount namespace (containerd, kubelet, the
        shims) and those in its containers' cgroups (containers have mount namespaces
        of their own)."""
        in_ns = _pids_in_mount_ns(self.mount_ns) if self.mount_ns else []
        in_containers = [
            int(pid)
            for cgroup in self._container_cgroups()
            if cgroup.parent.parent.name == "pids"
            for pid in _read(cgroup / "cgroup.procs").split()
        ]
        return sorted({*in_ns, *in_containers})

    def _end_processes(self, timeout_s: float = 15.0) -> None:
        """SIGKILL whatever of the node still runs (shims, containers)."""
        for pid in self.processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(WaitTimeout):
            until(lambda: not self.processes(), timeout_s=timeout_s, interval_s=0.1,
                  message=f"the processes of {self.name} to end")  # fmt: skip

    def _remove_cgroups(self) -> None:
        """Remove the (empty) cgroups runc left for containers it could not delete, then
        their parent ``k8s.io`` (containerd's namespace) where nothing else uses it."""
        for path in [*self._container_cgroups(), *Path("/sys/fs/cgroup").glob("*/k8s.io")]:
            with contextlib.suppress(OSError):  # busy: in use, by another node or run
                path.rmdir()

    def _container_cgroups(self) -> list[Path]:
        root = Path("/sys/fs/cgroup")
        return [
            d for cid in self._container_ids for d in root.glob(f"*/k8s.io/{cid}") if d.is_dir()
        ]

    def _delete_node_object(self) -> None:
        api = api_client(self.control_plane.admin_kubeconfig)
        try:
            client.CoreV1Api(api).delete_node(self.name)
        finally:
            api.close()  # type: ignore[no-untyped-call]

    # -- inspection ----------------------------------------------------------

    def _netns_names(self) -> list[str]:
        return [line.split()[0] for line in _run("ip", "netns", "list").splitlines() if line]

    def leftovers(self) -> list[str]:
        """What the node left behind, as ``ps``, ``mount`` and ``ip`` show it (empty: clean).

        Processes in its mount namespace or naming its directory; mounts under its
        directory; network namespaces that appeared since it started; its bridge;
        cgroups of its containers.
        """
        root = str(self.layout.root)
        found = [f"process {pid}: {_read(Path(f'/proc/{pid}/cmdline'))!r}"
                 for pid in self.processes()]  # fmt: skip
        found += [
            f"process {line.strip()}"
            for line in _run("ps", "-eo", "pid=,args=").splitlines()
            if root in line
        ]
        found += [f"mount {line}" for line in _run("mount").splitlines() if root in line]
        found += [
            f"network namespace {name}"
            for name in self._netns_names()
            if name not in self._netns_before
        ]
        if self._link_exists():
            found.append(f"link {self.layout.bridge}")
        found += [f"cgroup {path}" for path in self._container_cgroups()]
        return found

    def footprint(self) -> dict[str, int]:
        """While it runs: how many processes it has and how many mounts in its mount
        namespace lie under its directory (what ``leftovers()`` must find gone after stop)."""
        if self.containerd is None:
            return {"processes": 0, "mounts": 0}
        self._container_ids |= set(self._ctr("containers", "ls", "-q").stdout.split())
        mountinfo = Path(f"/proc/{self.containerd.popen.pid}/mountinfo").read_text()
        return {
            "processes": len(self.processes()),
            "mounts": sum(str(self.layout.root) in line for line in mountinfo.splitlines()),
        }

    def kubelet_healthy(self) -> bool:
        """Whether kubelet's /healthz answers ok."""
        return _http_get(f"http://127.0.0.1:{self.healthz_port}/healthz") == b"ok"

    def containerd_log_tail(self, lines: int = 30) -> str:
        path = self.layout.logs / "containerd.log"
        with contextlib.suppress(OSError):
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        return ""
