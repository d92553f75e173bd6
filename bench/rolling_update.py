"""A rolling update of five gRPC backends under steady load: three delivery paths, two baselines.

Real control plane, the operator under its own RBAC, a real kube-proxy
(nftables) in a private network namespace (run as root), the projector as the
client's ServiceAccount. The harness is ``testenv.rollout`` (shared with
tests/e2e/test_rolling_update.py): five Pods replaced one by one (maxSurge 1,
maxUnavailable 0; after a 1 s preStop each old server drains, then stops:
kuberesolver.server.DrainableServer), with
``--rate`` calls per second (1 s deadline, no wait_for_ready) throughout.

Settings, one namespace each, in one run:

- ``projector``: kuberesolver, the projector without lag (the fast path);
- ``lag_fallback``: kuberesolver, every update ``--lag-s`` late (a plain
  kubelet mount), with the ClusterIP fallback;
- ``lag_no_fallback``: the same lag, the fallback switched off;
- ``static_list``: a baseline, the addresses resolved once at start (``ipv4:``
  round_robin; what ``dns:///`` to a headless Service does until a connection
  drops); it never reaches a new Pod, so its load runs 30 s past the rollout
  and its failures are counted over that window;
- ``new_channel_per_update``: a baseline, a new ``ipv4:`` round_robin channel
  per snapshot update (no lag), the old one closed 1 s later;
- ``headless_projector``: a headless Service (no ClusterIP, so no fallback),
  delivered as the mounts webhook chooses for it: a client Pod is admitted
  through the apiserver, and the projector runs with the injected sidecar's
  arguments (a plain mount there would be ``--lag-s`` late, as below);
- ``headless_lag_no_fallback`` and ``headless_lag_fallback``: the baselines,
  the same headless Service through a plain mount ``--lag-s`` late, the
  fallback off and on (on, it has no ClusterIP to use).

Each holds ``failed_rpcs``, ``rps`` (calls made per second, failed ones
included), ``ready_to_first_rpc_ms_p50``/``_p99`` (from a new Pod's Ready to
its first answered call; null when some Pod never got one) and
``reconnects`` (connections the servers accepted beyond one per new Pod that
got traffic) and ``delivery``. ``ratios`` compares with the baselines;
``--only`` runs some settings. Last line: one JSON
object (json.dumps in _common.emit).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import emit
from kubernetes import client

from testenv import ControlPlane, ensure_binaries
from testenv.kube import api_client, apply, create_namespace, service_account_token
from testenv.kube_proxy import KubeProxy
from testenv.mounts_webhook import registered, webhook_env
from testenv.netns import enter_private_network
from testenv.operator_process import OperatorProcess
from testenv.rollout import run_rollout

ROOT = Path(__file__).resolve().parent.parent


def _namespace(admin: client.ApiClient, key: str) -> str:
    return create_namespace(admin, f"roll-{key.replace('_', '-')}-{uuid.uuid4().hex[:6]}")


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 2) if b else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lag-s", type=float, default=60.0, help="the plain mount's lag")
    parser.add_argument("--rate", type=float, default=250.0, help="calls per second")
    parser.add_argument("--only", default="", help="comma-separated settings (default: all)")
    args = parser.parse_args()

    ensure_binaries()
    enter_private_network()
    settings: list[tuple[str, dict[str, Any]]] = [
        ("projector", {}),
        ("lag_fallback", {"lag_s": args.lag_s, "fallback": True}),
        ("lag_no_fallback", {"lag_s": args.lag_s, "fallback": False}),
        ("static_list", {"client_kind": "static_list"}),
        ("new_channel_per_update", {"client_kind": "new_channel"}),
        ("headless_projector", {"headless": True, "via_webhook": True, "lag_s": args.lag_s}),
        ("headless_lag_no_fallback", {"headless": True, "lag_s": args.lag_s, "fallback": False}),
        ("headless_lag_fallback", {"headless": True, "lag_s": args.lag_s, "fallback": True}),
    ]
    if args.only:
        wanted = set(args.only.split(","))
        settings = [(key, kw) for key, kw in settings if key in wanted]
    results: dict[str, Any] = {}
    with ControlPlane() as cp, tempfile.TemporaryDirectory(prefix="rolling-") as tmp:
        admin = api_client(cp.admin_kubeconfig)
        apply(admin, ROOT / "crds", ROOT / "manifests/namespace.yaml", ROOT / "manifests/rbac.yaml")
        token = service_account_token(admin, "kuberesolver-system", "kuberesolver-operator")
        op_kubeconfig = cp.token_kubeconfig("operator", token, "kuberesolver-system")
        env = {
            **webhook_env(cp, Path(tmp) / "webhook-tls"),
            "KUBERESOLVER_PROJECTOR_IMAGE": "kuberesolver-projector:0.1.0",
        }
        with (
            KubeProxy(cp),
            registered(admin, cp, int(env["KUBERESOLVER_WEBHOOK_PORT"])),
            OperatorProcess(op_kubeconfig, env, name="bench-rollout"),
        ):
            for i, (key, kw) in enumerate(settings):
                start = time.monotonic()
                result = run_rollout(
                    cp,
                    admin,
                    _namespace(admin, key),
                    Path(tmp),
                    first_ip=1000 + 20 * i,
                    rate_per_s=args.rate,
                    log=lambda line: print(line, file=sys.stderr),
                    **kw,
                )
                results[key] = result.summary()
                print(
                    f"{key}: {results[key]} failures={result.failures} "
                    f"rollout {result.rollout_s:.1f} s, setting {time.monotonic() - start:.0f} s",
                    file=sys.stderr,
                )
    ratios = {
        "reconnects_new_channel_per_update_vs_projector": (
            "new_channel_per_update", "reconnects", "projector"
        ),
        "failed_rpcs_lag_no_fallback_vs_lag_fallback": (
            "lag_no_fallback", "failed_rpcs", "lag_fallback"
        ),
        "failed_rpcs_static_list_vs_projector": ("static_list", "failed_rpcs", "projector"),
        "failed_rpcs_headless_lag_no_fallback_vs_headless_projector": (
            "headless_lag_no_fallback", "failed_rpcs", "headless_projector"
        ),
    }  # fmt: skip
    results["ratios"] = {
        name: _ratio(results[a][key], max(1, results[b][key]))
        for name, (a, key, b) in ratios.items()
        if a in results and b in results
    }
    results["lag_s"] = args.lag_s
    emit(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
