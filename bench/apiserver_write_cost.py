"""What each API call of one endpoint change costs the control plane, on the real apiserver.

One EndpointSlice change at the operator's scale tier means three writes:
the slice itself (written by the endpointslice controller, here by the
bench), the target's ConfigMap (the operator's one necessary write) and, if
it patched status on every change, the GrpcTarget's status. This bench does
each ``--count`` times in a row, with objects of the tier's size (100
endpoints), and reads the CPU the apiserver, etcd and the controller-manager
used meanwhile. Baseline in the same run: a GET of a missing ConfigMap (the
cheapest call there is).

Last line, one JSON object: for each call, ``control_plane_cpu_ms`` per call
and ``wall_ms`` per call; and ``cores_at_100_per_s``: the cores the control
plane alone needs for 100 changes per second (slice + ConfigMap), the
operator_scale tier 2 rate.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil
from _common import emit
from kubernetes import client

from kuberesolver.operator.logic.spec import GROUP, PLURAL, VERSION
from testenv import ControlPlane
from testenv.kube import api_client, apply

ROOT = Path(__file__).resolve().parent.parent
NS = "cost"


def endpoints(k: int) -> list[dict[str, Any]]:
    return [
        {"addresses": [f"10.{k % 200}.{i // 200}.{i % 200}"], "conditions": {"ready": True},
         "nodeName": "node-a", "zone": "z1"}
        for i in range(100)
    ]  # fmt: skip


def status(k: int) -> dict[str, Any]:
    when = "2026-01-01T00:00:00Z"
    conditions = [
        {"type": t, "status": "True", "reason": "Published", "lastTransitionTime": when,
         "message": f"{k} of {k} endpoints ready, revision {k}", "observedGeneration": 1}
        for t in ("Ready", "ServiceFound", "Rendered")
    ]  # fmt: skip
    return {"status": {"revision": k, "readyEndpoints": k, "totalEndpoints": k,
                       "lastUpdateTime": when, "observedGeneration": 1, "configMapName": "c",
                       "conditions": conditions}}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=400)
    n = parser.parse_args().count
    with ControlPlane() as cp:
        admin = api_client(cp.admin_kubeconfig)
        apply(admin, ROOT / "crds")
        core, disc = client.CoreV1Api(admin), client.DiscoveryV1Api(admin)
        custom = client.CustomObjectsApi(admin)
        plane = [psutil.Process(pid) for pid in cp.pids()]

        def raw(resp: Any) -> None:
            _ = resp.data

        raw(core.create_namespace({"metadata": {"name": NS}}, _preload_content=False))
        raw(disc.create_namespaced_endpoint_slice(NS, {
            "metadata": {"name": "s", "labels": {
                "kubernetes.io/service-name": "s",
                "endpointslice.kubernetes.io/managed-by": "bench.kuberesolver.io"}},
            "addressType": "IPv4", "ports": [{"name": "grpc", "port": 50051}],
            "endpoints": endpoints(0)}, _preload_content=False))  # fmt: skip
        raw(core.create_namespaced_config_map(NS, {
            "metadata": {"name": "c"}, "data": {"endpoints.json": json.dumps(endpoints(0))}},
            _preload_content=False))  # fmt: skip
        raw(custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "GrpcTarget",
            "metadata": {"name": "g"}, "spec": {"service": "s"}},
            _preload_content=False))  # fmt: skip

        def missing(k: int) -> None:
            with contextlib.suppress(client.ApiException):  # 404: the point
                raw(core.read_namespaced_config_map(f"none-{k}", NS, _preload_content=False))

        calls: dict[str, Callable[[int], None]] = {
            "get_missing_configmap": missing,
            "endpointslice_patch": lambda k: raw(disc.patch_namespaced_endpoint_slice(
                "s", NS, {"endpoints": endpoints(k)}, _preload_content=False)),
            "configmap_replace": lambda k: raw(core.replace_namespaced_config_map("c", NS, {
                "metadata": {"name": "c"},
                "data": {"endpoints.json": json.dumps(endpoints(k), indent=2)}},
                _preload_content=False)),
            "status_patch": lambda k: raw(custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, NS, PLURAL, "g", status(k), _preload_content=False,
                _content_type="application/merge-patch+json")),
        }  # fmt: skip

        def cpu_s() -> float:
            return sum(sum(p.cpu_times()[:2]) for p in plane)

        result: dict[str, Any] = {}
        for name, call in calls.items():
            c0, t0 = cpu_s(), time.monotonic()
            for k in range(1, n + 1):
                call(k)
            result[name] = {
                "control_plane_cpu_ms": round((cpu_s() - c0) * 1000 / n, 2),
                "wall_ms": round((time.monotonic() - t0) * 1000 / n, 2),
            }
            print(name, result[name], file=sys.stderr)
        per_change = (
            result["endpointslice_patch"]["control_plane_cpu_ms"]
            + result["configmap_replace"]["control_plane_cpu_ms"]
        )
        result["cores_at_100_per_s"] = round(per_change * 100 / 1000, 2)
        result["ratio_status_to_configmap"] = round(
            result["status_patch"]["control_plane_cpu_ms"]
            / result["configmap_replace"]["control_plane_cpu_ms"],
            2,
        )
        admin.close()
    emit(result)


if __name__ == "__main__":
    main()
