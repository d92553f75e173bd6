"""A real Kubernetes control plane on 127.0.0.1 for tests and the demo, like envtest.

etcd, kube-apiserver (RBAC on) and kube-controller-manager (the endpointslice,
garbagecollector, namespace, serviceaccount and admission-policy status
controllers) run as child processes on free loopback ports. There is no
kubelet and no scheduler: tests bind Pods to a Node themselves and set their
status. ``ControlPlane(real_nodes=True)`` is the control plane for real
kubelets (testenv/node.py): it adds kube-scheduler and the controllers that
Deployments and Nodes need, and listens for Pods as a cluster's apiserver does
(Service ``default/kubernetes``, whose endpoint is a local address of the
tests' network namespace: with kube-proxy, in-cluster clients find it).

    >>> with ControlPlane() as cp:
    ...     print(cp.admin_kubeconfig.name, cp.server.startswith("https://127.0.0.1:"))
    admin.kubeconfig True
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import yaml

from testenv.build import chosen_kubernetes, ensure_binaries
from testenv.netns import NODE_IP, SERVICE_CIDR, in_private_network
from testenv.pki import CertFiles, CertificateAuthority, service_account_keypair
from testenv.wait import WaitTimeout, until

log = logging.getLogger("testenv")

CONTROLLERS = ",".join(
    (
        "endpointslice",
        "garbagecollector",
        "namespace",
        "serviceaccount",
        # Type-checks ValidatingAdmissionPolicies into their status (expressionWarnings).
        "validatingadmissionpolicy-status-controller",
    )
)
KUBERNETES_SERVICE_IP = str(ipaddress.ip_network(SERVICE_CIDR)[1])
"""The ClusterIP of Service ``default/kubernetes``: where Pods find the apiserver."""
NODE_CONTROLLERS = "deployment,replicaset,nodelifecycle,podgc,root-ca-cert-publisher"
"""Added for real nodes: Deployments roll, kubelet's not-ready taint is lifted once the
Node is Ready, and every namespace gets the ``kube-root-ca.crt`` that service-account
token volumes project."""


AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    userGroups: ["system:serviceaccounts"]
  - level: None
"""
"""Every request of a ServiceAccount, with its verb, object and answer; nothing else."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_kubeconfig(
    path: Path,
    server: str,
    ca: Path,
    user: str,
    client: CertFiles | None = None,
    token: str | None = None,
    namespace: str = "default",
) -> Path:
    """Write a single-context kubeconfig for a client cert or a bearer token."""
    creds: dict[str, str] = {}
    if client is not None:
        creds = {"client-certificate": str(client.cert), "client-key": str(client.key)}
    if token is not None:
        creds = {"token": token}
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "testenv", "cluster": {"server": server, "certificate-authority": str(ca)}}
        ],
        "users": [{"name": user, "user": creds}],
        "contexts": [
            {
                "name": user,
                "context": {"cluster": "testenv", "user": user, "namespace": namespace},
            }
        ],
        "current-context": user,
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def _http_get(url: str, context: ssl.SSLContext | None = None) -> bytes:
    """The body of a successful GET, or b"" on any error (for readiness polls)."""
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as r:
            return bytes(r.read())
    except OSError:
        return b""


class ControlPlaneError(RuntimeError):
    """The control plane failed to start; the message carries the component's log tail."""


class _Process:
    """One child process with its log file, stopped as a whole process group."""

    def __init__(self, name: str, argv: list[str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self._log: IO[bytes] = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.popen.poll() is None

    def wait_until(self, probe: Callable[[], bool], what: str, timeout_s: float) -> None:
        """Poll ``probe`` while the process lives; a ControlPlaneError with its log if not."""

        def check() -> bool:
            if not self.alive():
                raise ControlPlaneError(f"{self.name} exited:\n{self.log_tail()}")
            return probe()

        try:
            until(check, timeout_s=timeout_s, interval_s=0.1, message=what, retry_on=())
        except WaitTimeout as exc:
            raise ControlPlaneError(f"{exc}:\n{self.log_tail()}") from None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM the process group, then SIGKILL what is left; idempotent."""
        if self.popen.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout_s)
        # Reap stragglers in the group even after the leader exited.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self._log.close()


class Started:
    """A context manager over idempotent ``start()`` / ``stop()``."""

    def start(self, timeout_s: float = 60.0) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class ControlPlane(Started):
    """etcd + kube-apiserver + kube-controller-manager on loopback.

    ``start()`` and ``stop()`` are idempotent; the object is a context manager.
    ``workdir`` holds certificates, kubeconfigs, logs and etcd's data; it is a
    temporary directory removed on stop unless one is given. ``kubernetes`` is
    ``newest`` or ``oldest`` (default: ``$KUBERESOLVER_TESTENV_KUBERNETES``, else
    newest; see testenv/build.py); ``bin_dir`` overrides it with ready binaries.
    ``audit=True`` has the apiserver log every request of a ServiceAccount
    (metadata only) to :attr:`audit_log` (testenv/audit.py reads it).
    """

    def __init__(
        self,
        workdir: Path | None = None,
        bin_dir: Path | None = None,
        kubernetes: str | None = None,
        real_nodes: bool = False,
        audit: bool = False,
    ) -> None:
        self._own_workdir = workdir is None
        self.audit = audit
        self.real_nodes = real_nodes
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="kuberesolver-testenv-"))
        self.bin_dir = bin_dir
        self.kubernetes = chosen_kubernetes(kubernetes)
        self.processes: dict[str, _Process] = {}
        self.apiserver_port = 0
        self.etcd_port = 0
        self.admin_kubeconfig = self.workdir / "admin.kubeconfig"
        self.audit_log = self.workdir / "logs" / "audit.log"
        self._ca: CertificateAuthority | None = None

    # -- lifecycle -----------------------------------------------------------

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def ca(self) -> CertificateAuthority:
        if self._ca is None:
            raise ControlPlaneError("the control plane is not started")
        return self._ca

    def start(self, timeout_s: float = 60.0) -> None:
        if self.processes:
            return
        bins = self.bin_dir or ensure_binaries(self.kubernetes)
        self.workdir.mkdir(parents=True, exist_ok=True)
        pki_dir = self.workdir / "pki"
        pki_dir.mkdir(exist_ok=True)
        logs = self.workdir / "logs"
        logs.mkdir(exist_ok=True)
        try:
            self._ca = CertificateAuthority(pki_dir)
            self._start_etcd(bins, logs, timeout_s)
            self._start_apiserver(bins, pki_dir, logs, timeout_s)
            self._start_controller_manager(bins, pki_dir, logs)
            if self.real_nodes:
                self._start_scheduler(bins, logs, timeout_s)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop every component in reverse order and remove the workdir if it is ours."""
        for name in reversed(list(self.processes)):
            self.processes[name].stop()
        self.processes.clear()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def restart_apiserver(self, timeout_s: float = 60.0) -> None:
        """Stop and start kube-apiserver on the same port (for restart tests)."""
        proc = self.processes.pop("kube-apiserver")
        proc.stop()
        argv = proc.popen.args
        assert isinstance(argv, list)
        self.processes["kube-apiserver"] = _Process("kube-apiserver", argv, proc.log_path)
        self._wait_ready(self.processes["kube-apiserver"], timeout_s)

    def pids(self) -> list[int]:
        return [p.popen.pid for p in self.processes.values()]

    # -- components ----------------------------------------------------------

    def _spawn(self, name: str, argv: list[str], logs: Path) -> _Process:
        proc = _Process(name, argv, logs / f"{name}.log")
        self.processes[name] = proc
        return proc

    def _start_etcd(self, bins: Path, logs: Path, timeout_s: float) -> None:
        self.etcd_port = free_port()
        peer = free_port()
        proc = self._spawn(
            "etcd",
            [
                str(bins / "etcd"),
                "--name=testenv",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{self.etcd_port}",
                f"--advertise-client-urls=http://127.0.0.1:{self.etcd_port}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=testenv=http://127.0.0.1:{peer}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
            logs,
        )
        url = f"http://127.0.0.1:{self.etcd_port}/health"
        proc.wait_until(
            lambda: b'"health":"true"' in _http_get(url), "etcd to be healthy", timeout_s
        )

    def _start_apiserver(self, bins: Path, pki: Path, logs: Path, timeout_s: float) -> None:
        ca = self.ca
        # For real nodes, Pods reach it as in a cluster: Service default/kubernetes, whose
        # endpoint (kept by the apiserver's lease reconciler) is NODE_IP, a local address of
        # the tests' private network namespace that kube-proxy forwards the ClusterIP to.
        # kubelets are reached by their InternalIP (logs, exec): their names resolve nowhere.
        in_cluster = ("--bind-address=0.0.0.0", f"--advertise-address={NODE_IP}",
                      "--endpoint-reconciler-type=lease",
                      "--kubelet-preferred-address-types=InternalIP")  # fmt: skip
        local = ("--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
                 "--endpoint-reconciler-type=none")  # fmt: skip
        if self.real_nodes and not in_private_network():
            raise ControlPlaneError(
                "a control plane for real nodes listens for their Pods: start it only after "
                "testenv.netns.enter_private_network()"
            )
        serving = ca.issue(
            "apiserver",
            "kube-apiserver",
            dns_names=("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"),
            ip_addresses=("127.0.0.1", NODE_IP, KUBERNETES_SERVICE_IP),
            server=True,
        )
        sa = service_account_keypair(pki)
        admin = ca.issue("admin", "testenv-admin", organizations=("system:masters",))
        self.apiserver_port = free_port()
        write_kubeconfig(self.admin_kubeconfig, self.server, ca.cert_path, "admin", client=admin)
        proc = self._spawn(
            "kube-apiserver",
            [
                str(bins / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
                *(in_cluster if self.real_nodes else local),
                f"--secure-port={self.apiserver_port}",
                f"--tls-cert-file={serving.cert}",
                f"--tls-private-key-file={serving.key}",
                f"--client-ca-file={ca.cert_path}",
                "--authorization-mode=RBAC",
                f"--service-account-key-file={sa.cert}",
                f"--service-account-signing-key-file={sa.key}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--allow-privileged=true",
                "--enable-priority-and-fairness=false",
                "--profiling=false",
                "--v=1",
                *self._audit_flags(),
            ],
            logs,
        )
        self._wait_ready(proc, timeout_s)

    def _audit_flags(self) -> list[str]:
        if not self.audit:
            return []
        policy = self.workdir / "audit-policy.yaml"
        policy.write_text(AUDIT_POLICY)
        return [
            f"--audit-policy-file={policy}",
            f"--audit-log-path={self.audit_log}",
            "--audit-log-format=json",
            "--audit-log-mode=blocking",
        ]

    def _wait_ready(self, proc: _Process, timeout_s: float) -> None:
        ctx = ssl.create_default_context(cafile=str(self.ca.cert_path))
        admin = self.ca.directory / "admin"
        ctx.load_cert_chain(f"{admin}.crt", f"{admin}.key")
        ready = f"{self.server}/readyz"
        proc.wait_until(lambda: _http_get(ready, ctx) == b"ok", "kube-apiserver /readyz", timeout_s)

    def _start_controller_manager(self, bins: Path, pki: Path, logs: Path) -> None:
        # The controller manager is infrastructure, not the code under test.
        kubeconfig = self.cert_kubeconfig(
            "controller-manager",
            "kube-controller-manager",
            "system:kube-controller-manager",
            organizations=("system:masters",),
        )
        node_flags = [f"--controllers={CONTROLLERS},{NODE_CONTROLLERS}",
                      f"--root-ca-file={self.ca.cert_path}"]  # fmt: skip
        self._spawn(
            "kube-controller-manager",
            [
                str(bins / "kube-controller-manager"),
                f"--kubeconfig={kubeconfig}",
                *(node_flags if self.real_nodes else [f"--controllers={CONTROLLERS}"]),
                "--leader-elect=false",
                "--secure-port=0",
                "--use-service-account-credentials=false",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--endpointslice-updates-batch-period=0s",
                "--v=1",
            ],
            logs,
        )

    def _start_scheduler(self, bins: Path, logs: Path, timeout_s: float) -> None:
        """kube-scheduler as ``system:kube-scheduler`` (the default RBAC binds its role)."""
        binary = bins / "kube-scheduler"
        if not binary.is_file():
            raise ControlPlaneError(f"{binary} is missing: run testenv/build.sh")
        kubeconfig = self.cert_kubeconfig("scheduler", "kube-scheduler", "system:kube-scheduler")
        port = free_port()
        proc = self._spawn(
            "kube-scheduler",
            [
                str(binary),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                "--profiling=false",
                "--v=1",
            ],
            logs,
        )
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # its self-signed cert
        url = f"https://127.0.0.1:{port}/healthz"
        proc.wait_until(lambda: _http_get(url, ctx) == b"ok", "kube-scheduler /healthz", timeout_s)

    # -- identities ----------------------------------------------------------

    def cert_kubeconfig(
        self, name: str, user: str, common_name: str, organizations: tuple[str, ...] = ()
    ) -> Path:
        """A kubeconfig at ``<name>.kubeconfig`` with a client certificate the CA issues."""
        cert = self.ca.issue(name, common_name, organizations=organizations)
        path = self.workdir / f"{name}.kubeconfig"
        return write_kubeconfig(path, self.server, self.ca.cert_path, user, client=cert)

    def token_kubeconfig(self, name: str, token: str, namespace: str = "default") -> Path:
        """A kubeconfig that authenticates with a bearer token (e.g. a ServiceAccount's)."""
        return write_kubeconfig(
            self.workdir / f"{name}.kubeconfig",
            self.server,
            self.ca.cert_path,
            name,
            token=token,
            namespace=namespace,
        )
