"""Simulated xDS clients for bench/xds_fanout.py: many ADS streams in one asyncio process.

``python _xds_fanout_clients.py URI AUTHORITY STREAMS TARGETS``: stream ``i``
subscribes, as grpc's own client does, to the Listener, Cluster and
ClusterLoadAssignment of target ``i % TARGETS`` and ACKs every response. It
prints ``ready`` once every stream holds its first CLA, then records when
each later CLA arrives, keyed by (target, the first endpoint's port: the
change's id). Each stdin line ``count`` is answered with how many arrived;
when stdin closes it prints them all as one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import defaultdict

import grpc
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
CLA = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
STREAMS_PER_CHANNEL = 100


def names(authority: str, target: int) -> dict[str, str]:
    name = f"t{target}.bench"
    return {
        LISTENER: f"xdstp://{authority}/envoy.config.listener.v3.Listener/{name}",
        CLUSTER: f"xdstp://{authority}/envoy.config.cluster.v3.Cluster/{name}",
        CLA: f"xdstp://{authority}/envoy.config.endpoint.v3.ClusterLoadAssignment/{name}",
    }


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

    async def send() -> discovery_pb2.DiscoveryRequest:
        while True:
            yield await requests.get()

    call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources(send())
    async for response in call:
        if response.type_url == CLA:
            at = time.monotonic()
            for packed in response.resources:
                cla = endpoint_pb2.ClusterLoadAssignment()
                packed.Unpack(cla)
                port = cla.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value
                if ready.is_set():
                    seen[f"{target}:{port}"].append(at)
            synced.set()
        requests.put_nowait(discovery_pb2.DiscoveryRequest(
            type_url=response.type_url, resource_names=[wanted[response.type_url]],
            version_info=response.version_info, response_nonce=response.nonce))  # fmt: skip


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
    await asyncio.gather(*(e.wait() for e in synced))
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
