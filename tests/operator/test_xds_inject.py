"""The xDS injection's pure parts: settings, the bootstrap, the plan and its application."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from kuberesolver.operator.webhook.xds_inject import (
    CA_ANNOTATION,
    TOKEN_DIR,
    VOLUME,
    InjectSettings,
    XdsInjection,
    bootstrap_for,
    inject_xds,
    plan_xds,
    wants_xds,
)
from kuberesolver.xds.bootstrap import ENV_CALL_CREDS, ENV_CONFIG

CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
SERVER = "kuberesolver-xds.kuberesolver-system.svc:18000"
PLAIN = XdsInjection(server_uri=SERVER)
TLS = XdsInjection(server_uri=SERVER, ca_pem=CA)


def pod(*containers: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"name": "client", "annotations": {"kuberesolver.io/xds": "true"}},
        "spec": {
            "containers": list(containers) or [{"name": "app"}, {"name": "side"}],
            "volumes": [{"name": "scratch", "emptyDir": {}}],
        },
    }


def applied(body: dict[str, Any], config: XdsInjection) -> tuple[dict[str, Any], list[str]]:
    plan, warnings = plan_xds(body, "app", config)
    out = copy.deepcopy(body)
    if plan is not None:
        inject_xds(out, plan)
    return out, warnings


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", [])}


def test_the_annotation_is_true_false_or_a_warning() -> None:
    assert wants_xds({"kuberesolver.io/xds": "True"}) == (True, [])
    assert wants_xds({"kuberesolver.io/xds": "false"}) == (False, [])
    assert wants_xds({}) == (False, [])
    wanted, warnings = wants_xds({"kuberesolver.io/xds": "yes please"})
    assert not wanted
    assert "neither" in warnings[0]


def test_plaintext_adds_only_the_inline_bootstrap_to_every_container() -> None:
    out, warnings = applied(pod(), PLAIN)
    assert warnings == []
    assert out["spec"]["volumes"] == [{"name": "scratch", "emptyDir": {}}]
    assert CA_ANNOTATION not in out["metadata"]["annotations"]
    for c in out["spec"]["containers"]:
        env = env_of(c)
        assert set(env) == {ENV_CONFIG}
        assert "volumeMounts" not in c
        bootstrap = json.loads(env[ENV_CONFIG])
        server = bootstrap["authorities"]["xds.kuberesolver.io"]["xds_servers"][0]
        assert server["server_uri"] == SERVER
        assert server["channel_creds"] == [{"type": "insecure"}]
        assert "call_creds" not in server


def test_tls_adds_token_and_ca_volume_call_creds_and_the_switch() -> None:
    out, warnings = applied(pod(), TLS)
    assert warnings == []
    volume = next(v for v in out["spec"]["volumes"] if v["name"] == VOLUME)
    token, ca = volume["projected"]["sources"]
    assert token == {
        "serviceAccountToken": {
            "audience": "xds.kuberesolver.io",
            "expirationSeconds": 600,
            "path": "token",
        }
    }
    assert ca["downwardAPI"]["items"] == [
        {"path": "ca.crt", "fieldRef": {"fieldPath": f"metadata.annotations['{CA_ANNOTATION}']"}}
    ]
    assert out["metadata"]["annotations"][CA_ANNOTATION] == CA
    for c in out["spec"]["containers"]:
        assert c["volumeMounts"] == [{"name": VOLUME, "mountPath": TOKEN_DIR, "readOnly": True}]
        env = env_of(c)
        assert env[ENV_CALL_CREDS] == "true"
        bootstrap = json.loads(env[ENV_CONFIG])
        for server in [
            *bootstrap["xds_servers"],
            *bootstrap["authorities"]["xds.kuberesolver.io"]["xds_servers"],
        ]:
            assert server["channel_creds"] == [
                {"type": "tls", "config": {"ca_certificate_file": f"{TOKEN_DIR}/ca.crt"}}
            ]
            assert server["call_creds"] == [
                {"type": "jwt_token_file", "config": {"jwt_token_file": f"{TOKEN_DIR}/token"}}
            ]


def test_a_container_with_its_own_bootstrap_is_left_alone_with_a_warning() -> None:
    own = {"name": "own", "env": [{"name": "GRPC_XDS_BOOTSTRAP", "value": "/etc/b.json"}]}
    inline = {"name": "inline", "env": [{"name": ENV_CONFIG, "value": "{}"}]}
    out, warnings = applied(pod({"name": "app"}, own, inline), TLS)
    app, own_out, inline_out = out["spec"]["containers"]
    assert own_out == own
    assert inline_out == inline
    assert ENV_CONFIG in env_of(app)
    assert len(warnings) == 2
    assert "'own' sets GRPC_XDS_BOOTSTRAP" in warnings[0]
    assert f"'inline' sets {ENV_CONFIG}" in warnings[1]


def test_no_container_to_change_means_no_change_at_all() -> None:
    own = {"name": "own", "env": [{"name": ENV_CONFIG, "value": "{}"}]}
    plan, warnings = plan_xds(pod(own), "app", TLS)
    assert plan is None
    assert len(warnings) == 1


def test_a_pod_that_has_our_volume_already_is_left_alone() -> None:
    body = pod()
    body["spec"]["volumes"].append({"name": VOLUME, "emptyDir": {}})
    plan, warnings = plan_xds(body, "app", TLS)
    assert plan is None
    assert VOLUME in warnings[0]


def test_a_container_using_the_token_directory_is_skipped() -> None:
    taken = {"name": "taken", "volumeMounts": [{"name": "x", "mountPath": TOKEN_DIR + "/"}]}
    out, warnings = applied(pod({"name": "app"}, taken), TLS)
    assert out["spec"]["containers"][1] == taken
    assert TOKEN_DIR in warnings[0]


def test_a_variable_the_container_sets_is_kept() -> None:
    mine = {"name": "app", "env": [{"name": ENV_CALL_CREDS, "value": "false"}]}
    out, _ = applied(pod(mine), TLS)
    env = out["spec"]["containers"][0]["env"]
    assert [e for e in env if e["name"] == ENV_CALL_CREDS] == [
        {"name": ENV_CALL_CREDS, "value": "false"}
    ]


def test_injecting_twice_changes_nothing_more() -> None:
    once, _ = applied(pod(), TLS)
    plan, _ = plan_xds(pod(), "app", TLS)
    assert plan is not None
    twice = copy.deepcopy(once)
    inject_xds(twice, plan)
    assert twice == once


def test_the_bootstrap_names_the_namespace_as_node_cluster() -> None:
    bootstrap = bootstrap_for(PLAIN, "shop")
    assert bootstrap["node"] == {"id": "kuberesolver-injected.shop", "cluster": "shop"}


def test_settings_off_without_the_xds_address() -> None:
    settings = InjectSettings.from_env({})
    assert "KUBERESOLVER_XDS_ADDRESS" in settings.off
    with pytest.raises(ValueError, match="does not serve xDS"):
        settings.injection()


def test_settings_default_server_is_the_service_in_the_operators_namespace() -> None:
    settings = InjectSettings.from_env(
        {"KUBERESOLVER_XDS_ADDRESS": "[::]:18000", "KUBERESOLVER_LEASE_NAMESPACE": "ops"}
    )
    assert settings.injection() == XdsInjection(server_uri="kuberesolver-xds.ops.svc:18000")


def tls_settings(cert_dir: str, **more: str) -> InjectSettings:
    """The settings of an operator serving xDS over TLS from ``cert_dir``, and ``more``."""
    return InjectSettings.from_env({
        "KUBERESOLVER_XDS_ADDRESS": "[::]:18000",
        "KUBERESOLVER_XDS_CERT_FILE": f"{cert_dir}/tls.crt",
        "KUBERESOLVER_XDS_KEY_FILE": f"{cert_dir}/tls.key",
        **more,
    })  # fmt: skip


def test_settings_under_tls_read_the_ca_beside_the_certificate() -> None:
    settings = tls_settings(
        "/etc/kuberesolver/xds",
        KUBERESOLVER_XDS_INJECT_SERVER="xds.example:443",
        KUBERESOLVER_XDS_AUDIENCE="aud",
    )
    assert settings.ca_file == "/etc/kuberesolver/xds/ca.crt"
    read: list[str] = []

    def reader(path: str) -> str:
        read.append(path)
        return CA

    config = settings.injection(reader)
    assert read == ["/etc/kuberesolver/xds/ca.crt"]
    assert config == XdsInjection(server_uri="xds.example:443", ca_pem=CA, audience="aud")


def test_settings_an_unreadable_or_bad_ca_is_a_clear_error() -> None:
    settings = tls_settings("/c", KUBERESOLVER_XDS_INJECT_CA_FILE="/nowhere/ca.pem")
    with pytest.raises(ValueError, match=r"cannot read the xDS CA /nowhere/ca\.pem"):
        settings.injection()
    with pytest.raises(ValueError, match="no PEM certificate"):
        settings.injection(lambda _: "junk")
