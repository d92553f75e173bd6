"""What a test node's containerd, CNI and kubelet are configured with (pure; no side effects).

Node ``index`` (1, 2, ...) owns the pod subnet ``10.245.<index>.0/24`` on a bridge
of its own, whose gateway address is the node's IP. The range is apart from the
``10.244.0.0/16`` that the tests' process "pods" use (testenv/netns.py).

    >>> layout = NodeLayout.of(Path("/w/worker-2"), 2)
    >>> layout.name, layout.ip, layout.subnet, layout.bridge
    ('worker-2', '10.245.2.1', '10.245.2.0/24', 'kr-node2')
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path

import yaml

__all__ = [
    "KUBELET_SYSCTLS",
    "POD_NETWORK",
    "SYNC_FREQUENCY_S",
    "NodeLayout",
    "cni_conflist",
    "containerd_config",
    "kubelet_config",
]

POD_NETWORK = "10.245.0.0/16"
"""Real Pods' addresses: one /24 per node, never inside the process pods' 10.244.0.0/16."""

SYNC_FREQUENCY_S = 60
"""kubelet's default pod resync period, written out: it re-reads a Pod's mounted
ConfigMaps on each sync, so an edit waits up to about this long (plus jitter)."""

KUBELET_SYSCTLS = {
    "vm.overcommit_memory": 1,
    "vm.panic_on_oom": 0,
    "kernel.panic": 10,
    "kernel.panic_on_oops": 1,
    "kernel.keys.root_maxkeys": 1000000,
    "kernel.keys.root_maxbytes": 25000000,
}
"""The kernel settings kubelet writes when they differ (its ``setupKernelTunables``).
The node shows kubelet files of its own with these values over ``/proc/sys``, so
it finds them set and the machine's own settings stay untouched."""


@dataclass(frozen=True)
class NodeLayout:
    """Names, addresses and paths of node ``index`` under its work directory ``root``."""

    index: int
    root: Path

    @classmethod
    def of(cls, root: Path, index: int) -> NodeLayout:
        if not 1 <= index <= 254:
            raise ValueError(f"node index must be in 1..254, got {index}")
        return cls(index, root)

    @property
    def name(self) -> str:
        return f"worker-{self.index}"

    @property
    def subnet(self) -> str:
        return f"{ipaddress.ip_network(POD_NETWORK).network_address + 256 * self.index}/24"

    @property
    def ip(self) -> str:
        return str(ipaddress.ip_network(self.subnet)[1])

    @property
    def bridge(self) -> str:
        return f"kr-node{self.index}"

    @property
    def containerd_socket(self) -> Path:
        return self.root / "containerd.sock"

    @property
    def kubelet_dir(self) -> Path:
        return self.root / "kubelet"

    @property
    def sysctl_dir(self) -> Path:
        return self.root / "sysctl"

    @property
    def logs(self) -> Path:
        return self.root / "logs"


def containerd_config(layout: NodeLayout, sandbox_image: str) -> str:
    """containerd 1.6's config: its own root, state and socket; CRI with our CNI and pause.

    ``restrict_oom_score_adj``: the test VMs refuse a negative ``oom_score_adj``, which
    runc would otherwise write for every sandbox (and die). ``netns_mounts_under_state_dir``
    keeps the pods' network namespaces out of ``/var/run/netns``.
    """
    root = layout.root
    cri = {
        "sandbox_image": sandbox_image,
        "restrict_oom_score_adj": True,
        "netns_mounts_under_state_dir": True,
        "stream_server_address": "127.0.0.1",
        "stream_server_port": "0",
        "enable_selinux": False,
        "containerd": {
            "snapshotter": "overlayfs",
            "default_runtime_name": "runc",
            "runtimes": {
                "runc": {
                    "runtime_type": "io.containerd.runc.v2",
                    "options": {"SystemdCgroup": False},
                }
            },
        },
        "cni": {"bin_dir": "/usr/lib/cni", "conf_dir": str(root / "cni" / "net.d")},
    }
    disabled = [
        f"io.containerd.snapshotter.v1.{s}" for s in ("aufs", "btrfs", "devmapper", "zfs")
    ] + ["io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
    return _toml(
        {
            "version": 2,
            "root": str(root / "containerd" / "root"),
            "state": str(root / "containerd" / "state"),
            "disabled_plugins": disabled,
            "grpc": {"address": str(layout.containerd_socket)},
            "plugins": {
                "io.containerd.grpc.v1.cri": cri,
                "io.containerd.internal.v1.opt": {"path": str(root / "containerd" / "opt")},
            },
        }
    )


def cni_conflist(layout: NodeLayout) -> str:
    """A bridge + host-local network: the node's /24, its IPAM state in the work directory."""
    return json.dumps(
        {
            "cniVersion": "1.0.0",
            "name": f"kuberesolver-{layout.name}",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": layout.bridge,
                    "isGateway": True,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": layout.subnet, "gateway": layout.ip}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(layout.root / "cni" / "ipam"),
                    },
                }
            ],
        },
        indent=2,
    )


def kubelet_config(layout: NodeLayout, healthz_port: int) -> str:
    """The KubeletConfiguration that registers a Ready node on these machines.

    cgroup v1 allowed (the VMs have it), cgroupfs with no QoS hierarchy and no
    allocatable enforcement, swap tolerated, no eviction, no DNS, anonymous
    AlwaysAllow on its own port (tests only), and every directory it would
    otherwise take on the host moved under the node's work directory.
    """
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "cgroupsPerQOS": False,
        "enforceNodeAllocatable": [],
        "failSwapOn": False,
        "resolvConf": "",
        "evictionHard": {},
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "containerRuntimeEndpoint": f"unix://{layout.containerd_socket}",
        "authentication": {
            "anonymous": {"enabled": True},
            "webhook": {"enabled": False},
            "x509": {},
        },
        "authorization": {"mode": "AlwaysAllow"},
        "address": layout.ip,
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "oomScoreAdj": 0,
        "podLogsDir": str(layout.root / "pod-logs"),
        "volumePluginDir": str(layout.root / "volume-plugins"),
        "serializeImagePulls": False,
        "syncFrequency": f"{SYNC_FREQUENCY_S}s",
    }
    return yaml.safe_dump(config, sort_keys=False)


def _toml(table: dict[str, object], prefix: str = "") -> str:
    """A minimal TOML writer for containerd's config: scalars, lists of strings, tables."""
    scalars: list[str] = []
    tables: list[str] = []
    for key, value in table.items():
        name = f'"{key}"' if "." in key else key
        if isinstance(value, dict):
            tables.append(f"\n[{prefix}{name}]\n" + _toml(value, f"{prefix}{name}."))
        else:
            scalars.append(f"{name} = {json.dumps(value)}\n")
    return "".join(scalars) + "".join(tables)
