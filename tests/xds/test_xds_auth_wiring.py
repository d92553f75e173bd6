"""Pure parts of the xDS token check's wiring: names to targets, the Bearer header, the
settings that switch it on, and the bootstrap's A97 call credentials."""

from __future__ import annotations

import pytest

from kuberesolver.xds.ads_aio import bearer_token
from kuberesolver.xds.bootstrap import build_bootstrap
from kuberesolver.xds.resources import cluster_name, listener_name
from kuberesolver.xds.settings import XdsSettings
from kuberesolver.xds.store import XdsStore, key_of, resource_name


def test_every_resource_name_leads_back_to_its_target() -> None:
    store = XdsStore("a.example")
    for key in [("ns", "greeter"), ("ns", "with.dots.in.it"), ("kube-system", "x")]:
        assert key_of(store.listener(key)) == key
        assert key_of(cluster_name(resource_name(key), "a.example")) == key
        assert key_of(listener_name(resource_name(key), "a.example")) == key
    assert key_of("xdstp://a/envoy.config.listener.v3.Listener/nodot") is None
    assert key_of("xdstp://a/envoy.config.listener.v3.Listener/.ns") is None
    assert key_of("") is None


def test_the_bearer_token_is_read_from_the_authorization_header_only() -> None:
    assert bearer_token((("authorization", "Bearer abc.def.ghi"),)) == "abc.def.ghi"
    assert bearer_token((("Authorization", "bearer  tok "),)) == "tok"
    assert bearer_token((("authorization", "Basic dXNlcjpwYXNz"),)) == ""
    assert bearer_token((("x-token", "Bearer abc"),)) == ""
    assert bearer_token((("authorization-bin", b"Bearer abc"),)) == ""
    assert bearer_token(None) == ""


def test_token_auth_needs_tls_and_a_known_mode() -> None:
    tls = {"KUBERESOLVER_XDS_CERT_FILE": "c", "KUBERESOLVER_XDS_KEY_FILE": "k"}
    on = XdsSettings.from_env({**tls, "KUBERESOLVER_XDS_AUTH": "token"})
    assert on.auth == "token"
    assert on.audience == "xds.kuberesolver.io"
    assert XdsSettings.from_env({}).auth == "none"
    with pytest.raises(ValueError, match="needs TLS"):
        XdsSettings.from_env({"KUBERESOLVER_XDS_AUTH": "token"})
    with pytest.raises(ValueError, match="'none' or 'token'"):
        XdsSettings.from_env({**tls, "KUBERESOLVER_XDS_AUTH": "mtls"})
    custom = XdsSettings.from_env({**tls, "KUBERESOLVER_XDS_AUTH": "token",
                                   "KUBERESOLVER_XDS_AUDIENCE": "mine"})  # fmt: skip
    assert custom.audience == "mine"


def test_the_bootstrap_carries_the_token_file_as_a97_call_creds_over_tls_only() -> None:
    b = build_bootstrap("xds:18000", ca_file="/ca.pem", token_file="/var/run/token")
    (server,) = b["xds_servers"]
    assert server["call_creds"] == [
        {"type": "jwt_token_file", "config": {"jwt_token_file": "/var/run/token"}}
    ]
    assert server["channel_creds"][0]["type"] == "tls"
    assert b["authorities"]["xds.kuberesolver.io"]["xds_servers"] == [server]
    assert "call_creds" not in build_bootstrap("xds:18000")["xds_servers"][0]
    with pytest.raises(ValueError, match="needs TLS"):
        build_bootstrap("xds:18000", token_file="/var/run/token")
