"""The snapshot contract: round trips, validation, and errors that name file and problem."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kuberesolver.core.snapshot import (
    ENDPOINTS_KEY,
    FORMAT_VERSION,
    Endpoint,
    SnapshotError,
    decode,
    encode,
    load,
)
from tests.snapshots import make_snapshot

SNAP = make_snapshot(
    [
        Endpoint("10.0.0.7", 50051, zone="zone-a", node="node-1", pod="greeter-1"),
        Endpoint("fd00::8", 50051, ready=False, serving=True, terminating=True),
    ],
    revision=7,
    namespace="backend",
    port_number=8080,
    service_config={"loadBalancingConfig": [{"round_robin": {}}]},
)


def _doc(**changes: Any) -> str:
    doc: dict[str, Any] = json.loads(encode(SNAP))
    doc.update(changes)
    return json.dumps(doc)


def test_round_trip_is_exact_and_deterministic() -> None:
    text = encode(SNAP)
    assert decode(text) == SNAP
    assert encode(decode(text)) == text
    assert decode(text.encode()) == SNAP


def test_document_shape() -> None:
    doc = json.loads(encode(SNAP))
    assert doc["version"] == FORMAT_VERSION
    assert doc["serverName"] == "greeter.backend"
    assert doc["target"] == {
        "service": "greeter",
        "namespace": "backend",
        "port": "grpc",
        "portName": "grpc",
        "portNumber": 8080,
    }
    assert set(doc["endpoints"][0]) == {
        "address", "port", "ready", "serving", "terminating", "zone", "node", "pod",
    }  # fmt: skip


def test_ready_endpoints_and_hostport() -> None:
    assert SNAP.ready_endpoints == (SNAP.endpoints[0],)
    assert SNAP.endpoints[1].hostport == "[fd00::8]:50051"


def test_unknown_keys_are_ignored() -> None:
    assert decode(_doc(future="x")) == SNAP


def test_matches_port() -> None:
    t = SNAP.target
    assert t.matches_port("grpc")
    assert t.matches_port(8080)
    assert t.matches_port("8080")
    assert t.matches_port(None)
    assert t.matches_port("")
    assert not t.matches_port("http")
    assert not t.matches_port(9090)


def test_load_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / ENDPOINTS_KEY
    path.write_text(encode(SNAP))
    assert load(path) == SNAP
    path.write_text(encode(SNAP)[:40])
    with pytest.raises(SnapshotError, match="corrupt JSON") as info:
        load(path)
    assert info.value.source == str(path)
    assert str(path) in str(info.value)
    with pytest.raises(SnapshotError, match="cannot read"):
        load(tmp_path / "missing.json")


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ("", "empty file"),
        ("   \n", "empty file"),
        (b"\xff\xfe", "not UTF-8"),
        ('{"version": 1, "endpo', "corrupt JSON at line 1"),
        ("[]", "the document must be an object"),
        (_doc(version=2), "unknown format version 2"),
        (_doc(version="1"), "'version' must be an integer"),
        (_doc(target=None), "'target' must be an object"),
        (_doc(revision=-1), "'revision' must be a non-negative integer"),
        (_doc(endpoints={}), "'endpoints' must be a list"),
        (_doc(endpoints=[{"address": "10.0.0.1", "port": 0}]), "must be in 1..65535"),
        (_doc(endpoints=[{"address": "", "port": 1}]), "'endpoints[0].address'"),
        (_doc(endpoints=[{"address": "10.0.0.1", "port": 1, "ready": "yes"}]), "true or false"),
        (_doc(endpoints=[{"address": "a", "port": 1}]), "must be an IPv4 or IPv6 address"),
        (_doc(endpoints=[{"address": "fe80::1%eth0", "port": 1}]), "no zone index"),
        (_doc(revision=2**63), "below 2**63"),
        (_doc(serviceConfig=[]), "'serviceConfig' must be an object"),
    ],
)
def test_bad_documents_raise_clear_errors(data: str | bytes, problem: str) -> None:
    with pytest.raises(SnapshotError) as info:
        decode(data, "/mnt/greeter.ns/endpoints.json")
    assert problem in str(info.value)
    assert str(info.value).startswith("/mnt/greeter.ns/endpoints.json: ")


def test_missing_version_is_refused() -> None:
    doc = json.loads(encode(SNAP))
    del doc["version"]
    with pytest.raises(SnapshotError, match="missing 'version'"):
        decode(json.dumps(doc))


def test_ready_null_means_ready() -> None:
    """Kubernetes' ``ready: null`` means unknown, to be read as ready (sercand's bug)."""
    snap = decode(_doc(endpoints=[{"address": "10.0.0.1", "port": 80, "ready": None}]))
    assert snap.endpoints[0].ready is True
