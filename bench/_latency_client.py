"""A client process for bench/direct_latency.py: calls SayHello in a loop, tagged ``x-client``.

Not a benchmark itself (make bench skips ``_*`` files): bench/direct_latency.py
prints the json line.

``--mode api``: direct mode (the API watched as the client's ServiceAccount);
``--mode file``: the operator path (the projected snapshot under ``--dir``);
``--mode xds``: plain ``grpc.insecure_channel`` on an ``xds://`` target (the
operator's ADS server, by the bootstrap ``GRPC_XDS_BOOTSTRAP`` names): no kuberesolver code.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc

import kuberesolver

METHOD = "/demo.Greeter/SayHello"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=("api", "file", "xds"), required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--id", required=True)
    parser.add_argument("--server", default="")
    parser.add_argument("--token-file", default="")
    parser.add_argument("--ca", default="")
    parser.add_argument("--dir", default="")
    parser.add_argument("--interval-ms", type=float, default=1.0)
    args = parser.parse_args()
    if args.mode == "api":
        k8s = kuberesolver.new_in_cluster_k8s_client(
            host=args.server, token_file=args.token_file, ca_file=args.ca
        )
        kuberesolver.register(kuberesolver.Builder(k8s))
        channel = kuberesolver.insecure_channel(args.target)
    elif args.mode == "xds":
        channel = grpc.insecure_channel(args.target)
    else:
        channel = kuberesolver.insecure_channel(args.target, snapshot_dir=args.dir)
    print("ready", flush=True)
    hello = channel.unary_unary(METHOD)
    metadata = (("x-client", args.id),)
    while True:
        with contextlib.suppress(grpc.RpcError):
            hello(b"", timeout=1, metadata=metadata)
        time.sleep(args.interval_ms / 1000)


if __name__ == "__main__":
    main()
