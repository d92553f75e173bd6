"""Property-based tests: ``decode`` raises only SnapshotError, whatever it is given."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from kuberesolver.core.service_config import OutlierDetection
from kuberesolver.core.snapshot import (
    EncodedEndpoints,
    Endpoint,
    Snapshot,
    SnapshotError,
    TargetRef,
    decode,
    encode,
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=30,
)

GOOD = {
    "version": 1,
    "target": {"service": "greeter", "namespace": "ns", "port": "grpc"},
    "serverName": "greeter.ns",
    "revision": 1,
    "endpoints": [{"address": "10.0.0.1", "port": 8080}],
    "serviceConfig": {},
}


def _decode_or_refuse(data: str | bytes) -> None:
    try:
        snapshot = decode(data, "prop")
    except SnapshotError:
        return
    assert isinstance(snapshot, Snapshot)


@given(st.binary(max_size=512))
def test_arbitrary_bytes(data: bytes) -> None:
    _decode_or_refuse(data)


@given(st.text(max_size=256))
def test_arbitrary_text(data: str) -> None:
    _decode_or_refuse(data)


@given(json_values)
def test_arbitrary_json(value: Any) -> None:
    _decode_or_refuse(json.dumps(value))


@given(
    key=st.sampled_from(["version", "target", "serverName", "revision", "endpoints"]),
    value=json_values,
)
def test_one_field_replaced_by_anything(key: str, value: Any) -> None:
    _decode_or_refuse(json.dumps({**GOOD, key: value}))


@given(
    field=st.sampled_from(["address", "port", "ready", "serving", "terminating", "zone", "pod"]),
    value=json_values,
)
def test_one_endpoint_field_replaced_by_anything(field: str, value: Any) -> None:
    endpoint = {**GOOD["endpoints"][0], field: value}  # type: ignore[index]
    _decode_or_refuse(json.dumps({**GOOD, "endpoints": [endpoint]}))


@settings(max_examples=20)
@given(depth=st.integers(min_value=1, max_value=200_000), opener=st.sampled_from("[{"))
def test_deep_nesting(depth: int, opener: str) -> None:
    inner = "[" * depth + "]" * depth if opener == "[" else '{"a":' * depth + "1" + "}" * depth
    _decode_or_refuse(json.dumps({**GOOD, "serviceConfig": {}})[:-1] + f', "x": {inner}}}')
    _decode_or_refuse(inner)


@settings(max_examples=30)
@given(
    key=st.sampled_from(["version", "revision", "port", "portNumber"]),
    digits=st.integers(min_value=1, max_value=20_000),
    sign=st.sampled_from(["", "-"]),
    suffix=st.sampled_from(["", ".5", "e400", "e-400"]),
)
def test_huge_numbers(key: str, digits: int, sign: str, suffix: str) -> None:
    number = sign + "9" * digits + suffix
    doc = json.dumps(GOOD)
    if key == "port":
        doc = doc.replace('"port": 8080', f'"port": {number}')
    elif key == "portNumber":
        doc = doc.replace('"port": "grpc"', f'"port": "grpc", "portNumber": {number}')
    else:
        doc = doc.replace(f'"{key}": 1', f'"{key}": {number}')
    _decode_or_refuse(doc)


addresses = st.ip_addresses().map(str)


@given(
    addresses=st.lists(addresses, max_size=5),
    port=st.integers(1, 65535),
    revision=st.integers(0, 2**63 - 1),
)
def test_every_valid_snapshot_round_trips(addresses: list[str], port: int, revision: int) -> None:
    snapshot = Snapshot(
        target=TargetRef("greeter", "ns", "grpc"),
        revision=revision,
        endpoints=tuple(Endpoint(a, port) for a in addresses),
    )
    assert decode(encode(snapshot)) == snapshot


optional_text = st.none() | st.text(max_size=12)


@given(
    endpoints=st.lists(
        st.builds(
            Endpoint,
            address=st.text(max_size=20),
            port=st.integers(0, 65535),
            ready=st.booleans(),
            serving=st.booleans(),
            terminating=st.booleans(),
            zone=optional_text,
            node=optional_text,
            pod=optional_text,
        ),
        max_size=6,
    ),
    service=st.text(max_size=12),
    revision=st.integers(0, 2**63 - 1),
    service_config=st.dictionaries(st.text(max_size=8), json_values, max_size=3),
    cluster_ips=st.lists(st.text(max_size=15), max_size=2).map(tuple),
    outlier=st.booleans(),
)
def test_encode_is_exactly_the_indented_json(
    endpoints: list[Endpoint],
    service: str,
    revision: int,
    service_config: dict[str, Any],
    cluster_ips: tuple[str, ...],
    outlier: bool,
) -> None:
    # The fast encoder's text is byte for byte json.dumps(indent=2, sort_keys=True).
    snapshot = Snapshot(
        target=TargetRef(service, "ns\n\u00e9\u2028", "grpc", "grpc", 8080),
        revision=revision,
        endpoints=tuple(endpoints),
        service_config=service_config,
        cluster_ips=cluster_ips,
        outlier_detection=OutlierDetection() if outlier else None,
    )
    slow = json.dumps(snapshot.to_dict(), sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    assert encode(snapshot) == slow


def test_encode_with_the_placeholder_text_in_a_value() -> None:
    # A value that holds the text the fast path uses as the endpoints' place: same output.
    snapshot = Snapshot(
        target=TargetRef("greeter", "ns"),
        revision=1,
        endpoints=(Endpoint("10.0.0.1", 1),),
        service_config={"x": "\x00endpoints\x00"},
        cluster_ips=("\x00endpoints\x00",),
    )
    slow = json.dumps(snapshot.to_dict(), sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    assert encode(snapshot) == slow


endpoint_pool = st.lists(
    st.builds(
        Endpoint,
        address=st.sampled_from(["10.0.0.1", "10.0.0.2", "fd00::1", "a\nb"]),
        port=st.integers(1, 3),
        ready=st.booleans(),
        zone=optional_text,
    ),
    min_size=1,
    max_size=8,
)


@given(
    pool=endpoint_pool,
    versions=st.lists(
        st.tuples(
            st.lists(st.integers(0, 7)),
            st.integers(0, 2**40),
            st.sampled_from([{}, {"a": 1}, {"b": "\x00revision\x00"}]),
            st.sampled_from(["s", "t"]),
        ),
        max_size=6,
    ),
)
def test_encoded_endpoints_change_nothing(
    pool: list[Endpoint], versions: list[tuple[list[int], int, dict[str, Any], str]]
) -> None:
    # The same objects come back (as the operator reuses them), in any order and number,
    # with the rest of the document changing or not.
    encoded = EncodedEndpoints()
    for picks, revision, service_config, service in versions:
        endpoints = tuple(pool[i % len(pool)] for i in picks)
        snapshot = Snapshot(TargetRef(service, "ns"), revision, endpoints, service_config)
        assert encode(snapshot, encoded) == encode(snapshot)
        assert encode(snapshot, encoded) == (
            json.dumps(snapshot.to_dict(), sort_keys=True, indent=2, ensure_ascii=False) + "\n"
        )
