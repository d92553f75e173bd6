"""The ADS protocol core, pure: protobuf DiscoveryRequests in, DiscoveryResponses out.

Every behaviour of :class:`~kuberesolver.xds.ads_core.AdsStream` is tested
here once; the transport tests (test_ads_protocol, the client's) test only
what the transports add.
"""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2
from google.rpc import status_pb2

from kuberesolver.xds.ads_core import MAX_PENDING, AdsStream
from kuberesolver.xds.resources import CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE


def cluster(name: str, lb: int = 0) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(cluster_pb2.Cluster(name=name, lb_policy=lb))
    return packed


def request(
    type_url: str,
    names: list[str],
    answer: discovery_pb2.DiscoveryResponse | None = None,
    error: str = "",
) -> discovery_pb2.DiscoveryRequest:
    """Subscribe to ``names``; ACK ``answer`` (NACK it with ``error``), as grpc does."""
    req = discovery_pb2.DiscoveryRequest(type_url=type_url, resource_names=names)
    if answer is not None:
        req.response_nonce = answer.nonce
        if error:
            req.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
        else:
            req.version_info = answer.version_info
    return req


def served(response: discovery_pb2.DiscoveryResponse | None) -> dict[str, int]:
    assert response is not None
    out = {}
    for packed in response.resources:
        c = cluster_pb2.Cluster()
        packed.Unpack(c)
        out[c.name] = c.lb_policy
    return out


def test_a_first_request_is_answered_with_what_exists() -> None:
    stream = AdsStream()
    assert stream.receive(request(CLUSTER_TYPE, ["a", "missing"])) is None
    assert stream.dirty() == [CLUSTER_TYPE]
    response = stream.respond(CLUSTER_TYPE, {"a": cluster("a"), "b": cluster("b")})
    assert served(response) == {"a": 0}  # only what is subscribed, and exists
    assert response is not None
    assert response.version_info == "1"
    assert response.nonce
    assert stream.dirty() == []


def test_an_ack_accepts_the_whole_response_and_nothing_is_resent() -> None:
    stream = AdsStream()
    stream.receive(request(CLUSTER_TYPE, ["a", "b"]))
    first = stream.respond(CLUSTER_TYPE, {"a": cluster("a"), "b": cluster("b")}, version="7")
    answer = stream.receive(request(CLUSTER_TYPE, ["a", "b"], first))
    assert answer is not None
    assert not answer.nack
    assert (answer.version, answer.accepted, answer.refused) == ("7", {"a", "b"}, frozenset())
    assert stream.types[CLUSTER_TYPE].acked == "7"
    assert stream.dirty() == []  # an ACK asks for nothing
    assert stream.respond(CLUSTER_TYPE, {"a": cluster("a"), "b": cluster("b")}) is None


def test_a_nack_of_one_resource_of_several_refuses_only_that_one() -> None:
    stream = AdsStream()
    stream.receive(request(CLUSTER_TYPE, ["a", "b", "c"]))
    first = stream.respond(CLUSTER_TYPE, {n: cluster(n) for n in "abc"})
    stream.receive(request(CLUSTER_TYPE, ["a", "b", "c"], first))

    # a and b change; grpc refuses a, naming it
    bad_a, new_b = cluster("a", 1), cluster("b", 2)
    second = stream.respond(CLUSTER_TYPE, {"a": bad_a, "b": new_b, "c": cluster("c")})
    assert served(second) == {"a": 1, "b": 2, "c": 0}
    answer = stream.receive(request(CLUSTER_TYPE, ["a", "b", "c"], second, "a: invalid"))
    assert answer is not None
    assert answer.nack
    assert answer.message == "a: invalid"
    assert answer.refused == {"a"}
    assert answer.accepted == {"b", "c"}
    assert stream.nacks == 1

    # c changes: the full set has a's last good version and b's accepted new one
    third = stream.respond(CLUSTER_TYPE, {"a": bad_a, "b": new_b, "c": cluster("c", 3)})
    assert served(third) == {"a": 0, "b": 2, "c": 3}
    stream.receive(request(CLUSTER_TYPE, ["a", "b", "c"], third))
    # nothing changed but the refused content: nothing to send
    assert stream.respond(CLUSTER_TYPE, {"a": bad_a, "b": new_b, "c": cluster("c", 3)}) is None
    # a changes again: offered
    assert served(stream.respond(CLUSTER_TYPE, {"a": cluster("a", 4), "b": new_b,
                                                "c": cluster("c", 3)}))["a"] == 4  # fmt: skip


def test_a_nack_that_names_nothing_blames_what_changed() -> None:
    stream = AdsStream()
    stream.receive(request(CLUSTER_TYPE, ["a", "b"]))
    first = stream.respond(CLUSTER_TYPE, {"a": cluster("a"), "b": cluster("b")})
    stream.receive(request(CLUSTER_TYPE, ["a", "b"], first))
    second = stream.respond(CLUSTER_TYPE, {"a": cluster("a"), "b": cluster("b", 1)})
    answer = stream.receive(request(CLUSTER_TYPE, ["a", "b"], second, "something is wrong"))
    assert answer is not None
    assert answer.refused == {"b"}
    assert answer.accepted == {"a"}


def test_a_refused_resource_never_accepted_is_left_out() -> None:
    stream = AdsStream()
    stream.receive(request(CLUSTER_TYPE, ["a", "b"]))
    first = stream.respond(CLUSTER_TYPE, {"a": cluster("a", 1), "b": cluster("b")})
    stream.receive(request(CLUSTER_TYPE, ["a", "b"], first, "a: invalid"))
    # b accepted, a never was: a is not offered until it changes
    assert served(stream.respond(CLUSTER_TYPE, {"a": cluster("a", 1), "b": cluster("b", 2)})) == {
        "b": 2
    }


def test_eds_responses_carry_only_what_changed_unless_the_whole_set_is_asked() -> None:
    stream = AdsStream()
    stream.receive(request(ENDPOINT_TYPE, ["a", "b"]))
    first = stream.respond(ENDPOINT_TYPE, {"a": cluster("a"), "b": cluster("b")})
    assert set(served(first)) == {"a", "b"}
    stream.receive(request(ENDPOINT_TYPE, ["a", "b"], first))
    assert served(stream.respond(ENDPOINT_TYPE, {"a": cluster("a", 1), "b": cluster("b")})) == {
        "a": 1
    }
    assert stream.touch(ENDPOINT_TYPE, full=True)
    assert set(
        served(stream.respond(ENDPOINT_TYPE, {"a": cluster("a", 1), "b": cluster("b")}))
    ) == {
        "a",
        "b",
    }


def test_a_change_marks_only_subscribed_streams() -> None:
    stream = AdsStream()
    stream.receive(request(LISTENER_TYPE, ["l"]))
    stream.respond(LISTENER_TYPE, {})
    assert not stream.changed(LISTENER_TYPE, {"other"})
    assert not stream.changed(CLUSTER_TYPE, {"l"})
    assert stream.dirty() == []
    assert stream.changed(LISTENER_TYPE, {"l", "other"})
    assert stream.dirty() == [LISTENER_TYPE]


def test_unsubscribing_forgets_and_sends_the_smaller_set() -> None:
    stream = AdsStream()
    stream.receive(request(CLUSTER_TYPE, ["a", "b"]))
    first = stream.respond(CLUSTER_TYPE, {"a": cluster("a", 1), "b": cluster("b")})
    stream.receive(request(CLUSTER_TYPE, ["a", "b"], first, "a: invalid"))
    current = {"a": cluster("a", 1), "b": cluster("b")}
    stream.receive(request(CLUSTER_TYPE, ["b"]))
    assert served(stream.respond(CLUSTER_TYPE, current)) == {"b": 0}
    assert stream.subscribed(CLUSTER_TYPE) == {"b"}
    # subscribed again: a's refusal was forgotten with it
    stream.receive(request(CLUSTER_TYPE, ["a", "b"]))
    assert served(stream.respond(CLUSTER_TYPE, current)) == {"a": 1, "b": 0}


def test_versions_count_per_type_and_nonces_are_unique() -> None:
    stream = AdsStream()
    stream.receive(request(CLUSTER_TYPE, ["a"]))
    stream.receive(request(LISTENER_TYPE, ["l"]))
    responses = [stream.respond(CLUSTER_TYPE, {"a": cluster("a", i)}) for i in range(3)] + [
        stream.respond(LISTENER_TYPE, {})
    ]
    assert [r.version_info for r in responses if r] == ["1", "2", "3", "1"]
    assert len({r.nonce for r in responses if r}) == 4


def test_a_stale_nonce_is_ignored() -> None:
    stream = AdsStream()
    stream.receive(request(CLUSTER_TYPE, ["a"]))
    first = stream.respond(CLUSTER_TYPE, {"a": cluster("a")})
    second = stream.respond(CLUSTER_TYPE, {"a": cluster("a", 1)})
    assert stream.receive(request(CLUSTER_TYPE, ["a"], second)) is not None
    # the answer to an older response arrives late: neither ACK nor NACK
    assert stream.receive(request(CLUSTER_TYPE, ["a"], first, "a: invalid")) is None
    assert stream.nacks == 0
    assert stream.types[CLUSTER_TYPE].acked == "2"
    unknown = discovery_pb2.DiscoveryResponse(nonce="999", version_info="9")
    assert stream.receive(request(CLUSTER_TYPE, ["a"], unknown)) is None
    assert stream.types[CLUSTER_TYPE].acked == "2"


def test_unknown_types_are_ignored_and_pending_is_bounded() -> None:
    stream = AdsStream()
    assert stream.receive(request("type.googleapis.com/Unknown", ["x"])) is None
    assert stream.types == {}
    stream.receive(request(ENDPOINT_TYPE, ["a"]))
    for i in range(3 * MAX_PENDING):  # a client that never answers
        stream.respond(ENDPOINT_TYPE, {"a": cluster("a", i)})
    assert stream.pending() == MAX_PENDING
