"""The real Kubernetes control plane used by the tests and the demo (not shipped)."""

from testenv.build import ensure_binaries, kubernetes_version, versions
from testenv.controlplane import ControlPlane, ControlPlaneError, free_port

__all__ = [
    "ControlPlane",
    "ControlPlaneError",
    "ensure_binaries",
    "free_port",
    "kubernetes_version",
    "versions",
]
