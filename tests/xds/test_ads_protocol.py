"""The operator's ADS transport, seen by a raw ADS client (grpcio and the envoy stubs).

The protocol itself (what a response carries, ACK and NACK per resource,
nonces) is the core's and is tested in test_ads_core; here, what the grpc.aio
transport adds: a store change reaches only the subscribed names, a NACK is
counted and the stream goes on, delta xDS is refused.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.rpc import status_pb2

from kuberesolver.core.snapshot import Endpoint
from kuberesolver.xds.resources import CLUSTER_TYPE, ENDPOINT_TYPE
from kuberesolver.xds.store import XdsStore
from testenv.wait import until
from tests.client._support import make_snapshot
from tests.xds.conftest import ServerThread

A, B = ("ns", "a"), ("ns", "b")


class RawAds:
    """One ADS stream: :meth:`send` requests, :meth:`next` waits for the next response."""

    def __init__(self, uri: str) -> None:
        self.channel = grpc.insecure_channel(uri)
        self._requests: queue.SimpleQueue[discovery_pb2.DiscoveryRequest | None] = (
            queue.SimpleQueue()
        )
        self._responses: queue.SimpleQueue[Any] = queue.SimpleQueue()
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(self.channel)
        self._call = stub.StreamAggregatedResources(self._iterate())
        threading.Thread(target=self._read, daemon=True).start()

    def _iterate(self) -> Iterator[discovery_pb2.DiscoveryRequest]:
        while (request := self._requests.get()) is not None:
            yield request

    def _read(self) -> None:
        try:
            for response in self._call:
                self._responses.put(response)
        except grpc.RpcError as exc:
            self._responses.put(exc)

    def send(
        self,
        type_url: str,
        names: list[str],
        answer: discovery_pb2.DiscoveryResponse | None = None,
        error: str = "",
    ) -> None:
        """Subscribe ``type_url`` to ``names``; ACK ``answer`` (NACK it with ``error``)."""
        request = discovery_pb2.DiscoveryRequest(
            type_url=type_url, resource_names=names, node={"id": "raw"}
        )
        if answer is not None:
            request.response_nonce = answer.nonce
            request.version_info = "" if error else answer.version_info
            if error:
                request.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
        self._requests.put(request)

    def next(self) -> discovery_pb2.DiscoveryResponse:
        item = self._responses.get(timeout=10)
        if isinstance(item, Exception):
            raise item
        return item

    def close(self) -> None:
        self._requests.put(None)
        self._call.cancel()
        self.channel.close()


def names_of(response: discovery_pb2.DiscoveryResponse, message: type[Any]) -> dict[str, Any]:
    out = {}
    for packed in response.resources:
        resource = message()
        packed.Unpack(resource)
        out[resource.cluster_name if message is endpoint_pb2.ClusterLoadAssignment
            else resource.name] = resource  # fmt: skip
    return out


@pytest.fixture
def raw(xds: ServerThread) -> Iterator[RawAds]:
    client = RawAds(xds.uri)
    yield client
    client.close()


def _ports(cla: endpoint_pb2.ClusterLoadAssignment) -> set[int]:
    return {
        e.endpoint.address.socket_address.port_value
        for loc in cla.endpoints
        for e in loc.lb_endpoints
    }


def test_cla_responses_carry_only_the_changed_clas(
    store: XdsStore, xds: ServerThread, raw: RawAds
) -> None:
    store.put(A, make_snapshot([Endpoint("10.0.0.1", 1)], service="a", port_number=0))
    store.put(B, make_snapshot([Endpoint("10.0.0.2", 2)], service="b", port_number=0))
    cla_a, cla_b = (n.replace("Listener", "ClusterLoadAssignment").replace(
        "listener", "endpoint") for n in (store.listener(A), store.listener(B)))  # fmt: skip
    raw.send(ENDPOINT_TYPE, [cla_a, cla_b])
    first = raw.next()
    assert set(names_of(first, endpoint_pb2.ClusterLoadAssignment)) == {cla_a, cla_b}
    raw.send(ENDPOINT_TYPE, [cla_a, cla_b], answer=first)

    store.put(A, make_snapshot([Endpoint("10.0.0.1", 1), Endpoint("10.0.0.3", 3)], revision=2,
                               service="a", port_number=0))  # fmt: skip
    second = raw.next()
    only_a = names_of(second, endpoint_pb2.ClusterLoadAssignment)
    assert set(only_a) == {cla_a}
    assert _ports(only_a[cla_a]) == {1, 3}
    assert int(second.version_info) > int(first.version_info)
    raw.send(ENDPOINT_TYPE, [cla_a, cla_b], answer=second)

    # a change to B reaches this stream as B alone
    store.put(B, make_snapshot([Endpoint("10.0.0.4", 4)], revision=2, service="b", port_number=0))
    assert set(names_of(raw.next(), endpoint_pb2.ClusterLoadAssignment)) == {cla_b}


def test_a_nack_is_counted_and_the_stream_goes_on(
    store: XdsStore, xds: ServerThread, raw: RawAds
) -> None:
    store.put(A, make_snapshot([Endpoint("10.0.0.1", 1)], service="a"))
    ca = store.listener(A).replace("listener.v3.Listener", "cluster.v3.Cluster")
    raw.send(CLUSTER_TYPE, [ca])
    first = raw.next()
    raw.send(CLUSTER_TYPE, [ca], answer=first, error=f"[resource index 0: {ca}: invalid]")
    until(lambda: [s.nacks for s in xds.server.streams()] == [1], timeout_s=10)
    assert xds.server.metrics.value("kuberesolver_xds_nacks_total", type="Cluster") == 1

    wrr = {"loadBalancingConfig": [{"weighted_round_robin": {}}]}
    store.put(A, make_snapshot([Endpoint("10.0.0.1", 1)], service="a"), wrr)
    changed = names_of(raw.next(), cluster_pb2.Cluster)[ca]
    assert changed != names_of(first, cluster_pb2.Cluster)[ca]


def test_delta_xds_is_refused_clearly(xds: ServerThread) -> None:
    with grpc.insecure_channel(xds.uri) as channel:
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
        call = stub.DeltaAggregatedResources(iter([discovery_pb2.DeltaDiscoveryRequest()]))
        with pytest.raises(grpc.RpcError) as info:
            list(call)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "state-of-the-world" in str(info.value.details())
