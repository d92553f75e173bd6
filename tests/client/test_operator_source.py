"""Library mode ``source="operator"``: the target mapping and the bootstrap check."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from kuberesolver.client.sources.api.builder import choose_source
from kuberesolver.client.sources.operator import (
    authority,
    check_bootstrap,
    ensure_bootstrap,
    xds_target,
)
from kuberesolver.client.target import parse_target
from kuberesolver.xds import bootstrap as server_bootstrap
from kuberesolver.xds.bootstrap_inprocess import add_authority, install_bootstrap


def authority_entry(name: str, server: str, ca_file: str = "", token_file: str = "") -> Any:
    built = server_bootstrap.xds_server(
        server, ca_file=ca_file or None, token_file=token_file or None
    )
    return server_bootstrap.authority_entry(name, built)


def test_the_default_authority_is_the_operators() -> None:
    assert authority({}) == server_bootstrap.DEFAULT_AUTHORITY
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


SERVER = "kuberesolver-xds.kuberesolver-system.svc:18000"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in (
        "GRPC_XDS_BOOTSTRAP",
        "GRPC_XDS_BOOTSTRAP_CONFIG",
        "GRPC_EXPERIMENTAL_XDS_BOOTSTRAP_CALL_CREDS",
        "KUBERESOLVER_XDS_SERVER",
        "KUBERESOLVER_XDS_SERVER_CA_FILE",
        "KUBERESOLVER_XDS_TOKEN_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def published() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(os.environ["GRPC_XDS_BOOTSTRAP_CONFIG"])
    return loaded


def test_a_token_without_tls_names_the_settings(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("KUBERESOLVER_XDS_SERVER", SERVER)
    clean_env.setenv("KUBERESOLVER_XDS_TOKEN_FILE", "/token")
    with pytest.raises(ValueError, match=r"KUBERESOLVER_XDS_SERVER_CA_FILE.*needs TLS"):
        ensure_bootstrap("xds.kuberesolver.io")
    assert "GRPC_XDS_BOOTSTRAP_CONFIG" not in os.environ


def test_with_the_server_setting_the_library_adds_the_authority(
    clean_env: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ValueError, match="KUBERESOLVER_XDS_SERVER=HOST:PORT"):
        ensure_bootstrap("xds.kuberesolver.io")
    clean_env.setenv("KUBERESOLVER_XDS_SERVER", SERVER)
    clean_env.setenv("KUBERESOLVER_XDS_SERVER_CA_FILE", "/ca.crt")
    clean_env.setenv("KUBERESOLVER_XDS_TOKEN_FILE", "/token")
    ensure_bootstrap("xds.kuberesolver.io")
    boot = published()
    assert boot["authorities"]["xds.kuberesolver.io"] == authority_entry(
        "xds.kuberesolver.io", SERVER, "/ca.crt", "/token"
    )
    assert boot["xds_servers"][0]["server_uri"] == SERVER
    assert os.environ["GRPC_EXPERIMENTAL_XDS_BOOTSTRAP_CALL_CREDS"] == "true"
    ensure_bootstrap("xds.kuberesolver.io")  # named now: nothing more
    assert published() == boot


def test_the_added_authority_and_the_in_process_one_keep_each_other(
    clean_env: pytest.MonkeyPatch,
) -> None:
    # the in-process server's bootstrap first, then the operator's authority ...
    install_bootstrap("127.0.0.1:1111")
    add_authority("xds.kuberesolver.io", authority_entry("xds.kuberesolver.io", SERVER))
    install_bootstrap("127.0.0.1:2222")  # a later install (e.g. a restarted in-process server)
    boot = published()
    assert set(boot["authorities"]) == {"kuberesolver", "xds.kuberesolver.io"}
    assert boot["authorities"]["kuberesolver"]["xds_servers"][0]["server_uri"] == "127.0.0.1:2222"
    # ... and the other way round
    clean_env.delenv("GRPC_XDS_BOOTSTRAP_CONFIG")
    add_authority("xds.kuberesolver.io", authority_entry("xds.kuberesolver.io", SERVER))
    install_bootstrap("127.0.0.1:3333")
    boot = published()
    assert set(boot["authorities"]) == {"kuberesolver", "xds.kuberesolver.io"}
    assert boot["xds_servers"][0]["server_uri"] == SERVER
