"""The projector: writes one ConfigMap into a directory with kubelet's atomic layout.

It serves as a fast-sync sidecar, as the source of snapshots for a client that
runs outside a cluster, and as kubelet's stand-in in tests. The layout writer
is pure standard library: :func:`write_atomic` and :func:`read_dir`.
"""

from kuberesolver.core.atomic_writer import read_dir, write_atomic

__all__ = ["read_dir", "write_atomic"]
