"""``kuberesolver-projector``: one ConfigMap, projected into a directory, kept up to date.

    kuberesolver-projector --namespace=demo --configmap=greeter \\
        --dir=/var/run/kuberesolver/greeter.demo

Credentials: in-cluster when there, else ``--kubeconfig`` or ``$KUBECONFIG``.
The namespace defaults to the Pod's own (or the kubeconfig context's).
SIGTERM and SIGINT stop it cleanly (exit status 0). ``--once`` projects the
current version and exits (status 1 if the ConfigMap does not exist).
``--check`` only says whether ``--dir`` holds a projection yet (status 0) or
not (1): the startup probe of the sidecar the mounts webhook injects.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

_MISSING_EXTRA = (
    "kuberesolver-projector needs httpx and PyYAML: pip install 'kuberesolver[projector]'"
)
_SA_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class _Stop(BaseException):
    """Raised by the signal handler to unwind a blocking read."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="kuberesolver-projector", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--configmap", required=True, help="name of the ConfigMap")
    parser.add_argument("--dir", required=True, type=Path, help="directory to write into")
    parser.add_argument("--namespace", default="", help="its namespace (default: the Pod's own)")
    parser.add_argument(
        "--kubeconfig", default="", help="kubeconfig (default: in-cluster, then $KUBECONFIG)"
    )
    parser.add_argument("--once", action="store_true", help="project once and exit")
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit 0 if --dir holds a projection, else 1 (a startup probe); reads nothing else",
    )
    parser.add_argument(
        "--lag-s",
        type=float,
        default=0.0,
        help="write each version after the first only this many seconds after it appears, "
        "as kubelet's 60-90 s refresh would (for tests and benchmarks; default 0)",
    )
    parser.add_argument("--log-level", default=os.environ.get("KUBERESOLVER_LOG_LEVEL", "INFO"))
    args = parser.parse_args(argv)
    if args.check:
        from kuberesolver.core.atomic_writer import DATA_DIR_NAME

        return 0 if (args.dir / DATA_DIR_NAME).is_dir() else 1
    try:
        import httpx  # noqa: F401  (the [projector] extra)
        import yaml  # noqa: F401
    except ImportError:
        print(_MISSING_EXTRA, file=sys.stderr)
        return 2
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )

    if args.lag_s < 0:
        parser.error(f"--lag-s must not be negative, got {args.lag_s}")
    # Imported after parsing: ``--help`` stays fast.
    from kuberesolver.kube.credentials import load_config
    from kuberesolver.kube.http import HttpApi
    from kuberesolver.projector.configmap_watch import (
        ConfigMapProjector,
        configmap_transport,
        rbac_hint,
    )

    config = load_config(args.kubeconfig)
    namespace = args.namespace or _pod_namespace() or config.namespace or "default"
    api = HttpApi(config)
    projector = ConfigMapProjector(
        configmap_transport(api, namespace, args.configmap),
        args.dir,
        lag_s=args.lag_s,
        refused_hint=rbac_hint(namespace, args.configmap),
    )
    if args.once:
        try:
            return 0 if projector.run_once() else 1
        finally:
            api.close()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        # Only raise: the exception unwinds the read in progress on this thread, and the
        # watch is closed on the way out. Closing it from here, inside that read, calls
        # into the HTTP client's connection code re-entrantly (one SIGTERM in 3 hung so,
        # in bench/shutdown.py; 0 in 200 since).
        raise _Stop

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        projector.run()
    except _Stop:
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        projector.stop()
        api.close()
    logging.getLogger("kuberesolver.projector").info("stopped")
    gc.freeze()  # the process exits next: no final collections over what the OS reclaims
    return 0


def _pod_namespace() -> str:
    try:
        return _SA_NAMESPACE.read_text().strip()
    except OSError:
        return ""


if __name__ == "__main__":
    sys.exit(main())
