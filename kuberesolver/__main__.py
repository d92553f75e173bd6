"""``python -m kuberesolver inspect [DIR]``: print what a client would see.

DIR defaults to the snapshot root (``KUBERESOLVER_DIR``, else
``/var/run/kuberesolver``). It may hold one snapshot (``DIR/endpoints.json``)
or one directory per target (``DIR/<service>.<namespace>/endpoints.json``).
For each snapshot it prints the target, the revision, the policy, and every
endpoint with the state a client gives it: ``serve`` (gets traffic),
``drain`` (terminating: in-flight calls finish, no new ones) or ``skip``
(not ready). With ``--zone`` it also shows which endpoints are preferred.
Exit status 1 when a snapshot is missing or unusable.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kuberesolver.settings import ENV_DIR, ENV_ZONE, resolve
from kuberesolver.snapshot import ENDPOINTS_KEY, Snapshot, SnapshotError, load

__all__ = ["main"]


def _find(directory: Path) -> list[Path]:
    if (directory / ENDPOINTS_KEY).exists():
        return [directory / ENDPOINTS_KEY]
    if not directory.is_dir():
        return []
    return sorted(
        p / ENDPOINTS_KEY
        for p in directory.iterdir()
        if not p.name.startswith(".") and (p / ENDPOINTS_KEY).exists()
    )


def _state(ready: bool, terminating: bool) -> str:
    if terminating:
        return "drain"
    return "serve" if ready else "skip"


def describe(snapshot: Snapshot, zone: str | None = None) -> dict[str, Any]:
    """What a client makes of one snapshot, as plain data."""
    from kuberesolver._xds.resources import ROUND_ROBIN, policy_from_service_config

    own_ready = zone is not None and any(
        e.zone == zone and e.ready and not e.terminating for e in snapshot.endpoints
    )
    seen: set[tuple[str, int]] = set()
    endpoints = []
    for e in snapshot.endpoints:
        key = (e.address, e.port)
        duplicate = key in seen
        seen.add(key)
        entry: dict[str, Any] = {
            "address": e.hostport,
            "state": "duplicate" if duplicate else _state(e.ready, e.terminating),
            "zone": e.zone,
            "node": e.node,
            "pod": e.pod,
        }
        if own_ready:
            entry["preferred"] = e.zone == zone
        endpoints.append(entry)
    t = snapshot.target
    return {
        "target": f"{t.server_name}:{t.port_name or t.port or t.port_number}",
        "serverName": snapshot.server_name,
        "revision": snapshot.revision,
        "version": snapshot.version,
        "lbPolicy": policy_from_service_config(snapshot.service_config) or ROUND_ROBIN,
        "ready": sum(1 for e in endpoints if e["state"] == "serve"),
        "endpoints": endpoints,
    }


def inspect(directory: Path, zone: str | None, as_json: bool, out: Any = sys.stdout) -> int:
    paths = _find(directory)
    if not paths:
        print(
            f"no snapshot under {directory} (looked for {directory / ENDPOINTS_KEY} and "
            f"{directory}/<service>.<namespace>/{ENDPOINTS_KEY})",
            file=sys.stderr,
        )
        return 1
    status = 0
    results: list[dict[str, Any]] = []
    for path in paths:
        try:
            info = describe(load(path), zone)
        except SnapshotError as exc:
            status = 1
            results.append({"path": str(path), "error": exc.problem})
            continue
        results.append({"path": str(path), **info})
    if as_json:
        json.dump(results if len(results) > 1 else results[0], out, indent=2)
        out.write("\n")
        return status
    for r in results:
        if "error" in r:
            print(f"{r['path']}: UNUSABLE: {r['error']}", file=out)
            continue
        print(
            f"{r['target']}  revision {r['revision']}  {r['ready']}/{len(r['endpoints'])} "
            f"ready  policy {r['lbPolicy']}  TLS name {r['serverName']}  ({r['path']})",
            file=out,
        )
        for e in r["endpoints"]:
            mark = " *" if e.get("preferred") else ""
            where = " ".join(f"{k}={e[k]}" for k in ("zone", "node", "pod") if e[k])
            print(f"  {e['state']:<9} {e['address']:<24} {where}{mark}".rstrip(), file=out)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kuberesolver", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("inspect", help="print what a client would see")
    p.add_argument("dir", nargs="?", help=f"snapshot root or directory (default: ${ENV_DIR})")
    p.add_argument("--zone", help=f"the client's zone (default: ${ENV_ZONE})")
    p.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    settings = resolve(snapshot_dir=args.dir, zone=args.zone)
    return inspect(settings.snapshot_dir, settings.zone, args.json)


if __name__ == "__main__":
    sys.exit(main())
