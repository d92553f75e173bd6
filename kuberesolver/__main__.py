"""``python -m kuberesolver``: inspect snapshots, write development ones, write xDS bootstraps.

``inspect [DIR]`` prints what a client would see; ``snapshot DIR
SERVICE.NAMESPACE ADDRESS:PORT...`` writes a development snapshot
(:mod:`kuberesolver.client.dev_snapshot`); ``bootstrap --server URI`` writes the grpc
xDS bootstrap that sends ``xds://<authority>/<name>.<namespace>`` to the
operator's xDS server (:mod:`kuberesolver.xds.bootstrap`);
``--version`` prints the version.

``inspect``:

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
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kuberesolver.client.settings import ENV_DIR, ENV_ZONE, resolve
from kuberesolver.core.snapshot import ENDPOINTS_KEY, Snapshot, SnapshotError, load

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
    from kuberesolver.core.policies import ROUND_ROBIN, policy_from_service_config

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
    port = t.port_name or t.port or t.port_number
    return {
        "target": f"{t.server_name}:{port}" if port else t.server_name,
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
        prog="kuberesolver",
        description="inspect snapshots, write development ones, write xDS bootstraps",
    )
    parser.add_argument("--version", action="version", version=f"kuberesolver {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("inspect", help="print what a client would see")
    p.add_argument("dir", nargs="?", help=f"snapshot root or directory (default: ${ENV_DIR})")
    p.add_argument("--zone", help=f"the client's zone (default: ${ENV_ZONE})")
    p.add_argument("--json", action="store_true", help="print JSON")
    w = sub.add_parser(
        "snapshot",
        help="write a development snapshot (DIR/SERVICE.NAMESPACE/endpoints.json)",
        description="Write DIR/SERVICE.NAMESPACE/endpoints.json in kubelet's atomic layout; "
        "a client with KUBERESOLVER_DIR=DIR then dials kubernetes:///SERVICE.NAMESPACE:PORT.",
    )
    w.add_argument("dir", type=Path, help="the snapshot root (what KUBERESOLVER_DIR names)")
    w.add_argument("target", help="SERVICE.NAMESPACE, e.g. greeter.demo")
    w.add_argument("addresses", nargs="*", help="ADDRESS:PORT of each endpoint ([v6]:port)")
    w.add_argument("--port", default="", help="the Service port name or number (default: any)")
    w.add_argument("--policy", default="round_robin", help="round_robin (default), "
                   "weighted_round_robin or pick_first")  # fmt: skip
    _bootstrap_parser(sub)
    args = parser.parse_args(argv)
    try:
        if args.command == "bootstrap":
            return _bootstrap(args)
        if args.command == "snapshot":
            return _snapshot(args.dir, args.target, args.addresses, args.port, args.policy)
        settings = resolve(snapshot_dir=args.dir, zone=args.zone)
        return inspect(settings.snapshot_dir, settings.zone, args.json)
    except BrokenPipeError:
        # The reader went away (`... | head`): stop quietly, as Unix tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


def _snapshot(
    directory: Path, target: str, addresses: Sequence[str], port: str, policy: str
) -> int:
    from kuberesolver.client.dev_snapshot import build_snapshot, write_snapshot

    try:
        snapshot = build_snapshot(target, addresses, port=port, policy=policy)
    except ValueError as exc:
        print(f"kuberesolver snapshot: {exc}", file=sys.stderr)
        return 2
    path = write_snapshot(directory, snapshot)
    written = load(path)
    print(f"{path}: {written.target.server_name} revision {written.revision}, "
          f"{len(written.endpoints)} endpoints")  # fmt: skip
    return 0


def _bootstrap_parser(sub: Any) -> None:
    from kuberesolver.xds.bootstrap import DEFAULT_AUTHORITY

    b = sub.add_parser(
        "bootstrap",
        help="write a grpc xDS bootstrap that points at the operator's xDS server",
        description="Write the JSON that GRPC_XDS_BOOTSTRAP names: a client then dials "
        "xds://AUTHORITY/NAME.NAMESPACE for the GrpcTarget NAME in NAMESPACE.",
    )
    b.add_argument("--server", required=True, help="the xDS server, a grpc target (HOST:PORT)")
    b.add_argument("--authority", default=DEFAULT_AUTHORITY,
                   help=f"the federation authority (default: {DEFAULT_AUTHORITY})")  # fmt: skip
    b.add_argument("--out", type=Path, help="write here (atomically) instead of to stdout")
    b.add_argument("--node-id", default="kuberesolver-client", help="the xDS node id")
    b.add_argument("--zone", default="", help="the client's zone: served its own zone first")
    b.add_argument("--ca-file", help="TLS: the CA that signed the server's certificate")
    b.add_argument("--cert-file", help="mutual TLS: the client's certificate")
    b.add_argument("--key-file", help="mutual TLS: the client's private key")
    b.add_argument("--token-file", help="gRFC A97 call credentials: the projected "
                   "ServiceAccount token (needs --ca-file, and "
                   "GRPC_EXPERIMENTAL_XDS_BOOTSTRAP_CALL_CREDS=true in the client)")  # fmt: skip


def _bootstrap(args: argparse.Namespace) -> int:
    from kuberesolver.xds.bootstrap import build_bootstrap, dumps

    try:
        text = dumps(
            build_bootstrap(
                args.server,
                args.authority,
                node_id=args.node_id,
                zone=args.zone,
                ca_file=args.ca_file,
                cert_file=args.cert_file,
                key_file=args.key_file,
                token_file=args.token_file,
            )
        )
    except ValueError as exc:
        print(f"kuberesolver bootstrap: {exc}", file=sys.stderr)
        return 2
    if args.out is None:
        sys.stdout.write(text)
        return 0
    out: Path = args.out
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, out)
    print(f"{out}: xDS bootstrap for authority {args.authority} at {args.server}",
          file=sys.stderr)  # fmt: skip
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("kuberesolver")
    except PackageNotFoundError:
        from kuberesolver._version import __version__

        return __version__


if __name__ == "__main__":
    sys.exit(main())
