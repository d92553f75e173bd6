"""Library mode ``source="operator"``: the target mapping and the bootstrap check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kuberesolver._xds.via_operator import (
    DEFAULT_AUTHORITY,
    authority,
    check_bootstrap,
    xds_target,
)
from kuberesolver.direct.builder import choose_source
from kuberesolver.target import parse_target
from kuberesolver.xds_server import bootstrap as server_bootstrap


def test_the_default_authority_is_the_operators() -> None:
    assert DEFAULT_AUTHORITY == server_bootstrap.DEFAULT_AUTHORITY
    assert authority({}) == DEFAULT_AUTHORITY
    assert authority({"KUBERESOLVER_XDS_AUTHORITY": " xds.example "}) == "xds.example"
    with pytest.raises(ValueError, match="must not hold"):
        authority({"KUBERESOLVER_XDS_AUTHORITY": "a/b"})


def test_service_and_namespace_map_to_the_grpctarget_name_the_port_is_dropped() -> None:
    parsed = parse_target("kubernetes:///greeter.shop:grpc")
    assert xds_target(parsed, "xds.kuberesolver.io") == "xds://xds.kuberesolver.io/greeter.shop"
    own_ns = parse_target("kubernetes:///greeter", namespace="app")
    assert xds_target(own_ns, "a.b") == "xds://a.b/greeter.app"


def test_operator_is_a_source() -> None:
    assert choose_source("kubernetes", " Operator ") == "operator"
    with pytest.raises(ValueError, match="'file', 'api' or 'operator'"):
        choose_source("kubernetes", "xds")


def test_a_bootstrap_naming_the_authority_passes(tmp_path: Path) -> None:
    boot = {"xds_servers": [], "authorities": {"xds.kuberesolver.io": {}}}
    check_bootstrap("xds.kuberesolver.io", {"GRPC_XDS_BOOTSTRAP_CONFIG": json.dumps(boot)})
    path = tmp_path / "b.json"
    path.write_text(json.dumps(boot))
    check_bootstrap("xds.kuberesolver.io", {"GRPC_XDS_BOOTSTRAP": str(path)})


def test_no_bootstrap_or_another_authority_is_refused_saying_how(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"needs an xDS bootstrap.*kuberesolver\.io/xds"):
        check_bootstrap("xds.kuberesolver.io", {})
    other = json.dumps({"authorities": {"elsewhere": {}}})
    with pytest.raises(ValueError, match=r"has no authority .xds\.kuberesolver\.io."):
        check_bootstrap("xds.kuberesolver.io", {"GRPC_XDS_BOOTSTRAP_CONFIG": other})
    with pytest.raises(ValueError, match="not valid JSON"):
        check_bootstrap("xds.kuberesolver.io", {"GRPC_XDS_BOOTSTRAP_CONFIG": "{"})
    with pytest.raises(ValueError, match="cannot read the xDS bootstrap"):
        check_bootstrap("x", {"GRPC_XDS_BOOTSTRAP": str(tmp_path / "missing.json")})
