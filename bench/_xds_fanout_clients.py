"""Simulated xDS clients for bench/xds_fanout.py: many ADS streams in one asyncio process.

``python _xds_fanout_clients.py URI AUTHORITY STREAMS TARGETS``: stream ``i``
subscribes, as grpc's own client does, to the Listener, Cluster and
ClusterLoadAssignment of target ``i % TARGETS`` (``gt-<i>.bench``) and ACKs
every response. It prints ``ready`` once every stream holds its first CLA;
from then on, for each endpoint address a CLA adds, it records when the
stream had sent the ACK of that CLA, keyed ``<target>:<address>``. Each stdin
line ``count`` is answered with how many were recorded; when stdin closes it
prints them all as one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator

import grpc
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
CLA = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
STREAMS_PER_CHANNEL = 100
SYNC_TIMEOUT_S = 600  # then exit: the bench reads no ``ready`` and says so


def names(authority: str, target: int) -> dict[str, str]:
    name = f"gt-{target}.bench"
    return {
        LISTENER: f"xdstp://{authority}/envoy.config.listener.v3.Listener/{name}",
        CLUSTER: f"xdstp://{authority}/envoy.config.cluster.v3.Cluster/{name}",
        CLA: f"xdstp://{authority}/envoy.config.endpoint.v3.ClusterLoadAssignment/{name}",
    }


def addresses(response: discovery_pb2.DiscoveryResponse) -> set[str]:
    """Every endpoint address in a CLA response (all localities and priorities)."""
    found: set[str] = set()
    for packed in response.resources:
        cla = endpoint_pb2.ClusterLoadAssignment()
        packed.Unpack(cla)
        for locality in cla.endpoints:
            found.update(e.endpoint.address.socket_address.address for e in locality.lb_endpoints)
    return found


async def stream(
    channel: grpc.aio.Channel,
    authority: str,
    target: int,
    synced: asyncio.Event,
    ready: asyncio.Event,
    seen: dict[str, list[float]],
) -> None:
    requests: asyncio.Queue[discovery_pb2.DiscoveryRequest] = asyncio.Queue()
    wanted = names(authority, target)
    node = {"id": f"bench-{target}"}
    for type_url in (LISTENER, CLUSTER, CLA):
        requests.put_nowait(discovery_pb2.DiscoveryRequest(
            type_url=type_url, resource_names=[wanted[type_url]], node=node))  # fmt: skip

    async def send() -> AsyncIterator[discovery_pb2.DiscoveryRequest]:
        while True:
            yield await requests.get()

    known: set[str] = set()
    call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources(
        send(), wait_for_ready=True
    )
    async for response in call:
        requests.put_nowait(discovery_pb2.DiscoveryRequest(
            type_url=response.type_url, resource_names=[wanted[response.type_url]],
            version_info=response.version_info, response_nonce=response.nonce))  # fmt: skip
        if response.type_url == CLA:
            acked = time.monotonic()
            now = addresses(response)
            if ready.is_set():
                for address in now - known:
                    seen[f"{target}:{address}"].append(acked)
            known = now
            synced.set()


async def main(uri: str, authority: str, streams: int, targets: int) -> None:
    channels = [
        grpc.aio.insecure_channel(uri, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range((streams + STREAMS_PER_CHANNEL - 1) // STREAMS_PER_CHANNEL)
    ]
    seen: dict[str, list[float]] = defaultdict(list)
    ready = asyncio.Event()
    synced = [asyncio.Event() for _ in range(streams)]
    tasks = [
        asyncio.create_task(
            stream(
                channels[i // STREAMS_PER_CHANNEL], authority, i % targets, synced[i], ready, seen
            )
        )
        for i in range(streams)
    ]
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in synced)), SYNC_TIMEOUT_S)
    ready.set()
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        if line.strip() == "count":
            print(sum(len(v) for v in seen.values()), flush=True)
    print(json.dumps(seen), flush=True)
    for t in tasks:
        t.cancel()
    for ch in channels:
        await ch.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
