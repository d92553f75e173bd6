"""Rendering: service config merge, sandboxed templates, the size limit."""

from __future__ import annotations

import json

import pytest

from kuberesolver.core.snapshot import (
    ENDPOINTS_KEY,
    SERVICE_CONFIG_KEY,
    Endpoint,
    decode,
)
from kuberesolver.operator.logic.configmap import (
    build_configmap,
    build_data,
    controller_uid,
    is_owned_by,
)
from kuberesolver.operator.logic.render import (
    MAX_CONFIGMAP_BYTES,
    RenderError,
    build_service_config,
    configmap_size,
    render_templates,
    template_context,
)
from kuberesolver.operator.logic.spec import parse_spec
from tests.snapshots import make_snapshot

SNAP = make_snapshot(
    [Endpoint("10.0.0.1", 50051), Endpoint("10.0.0.2", 50051, ready=False, serving=False)],
    revision=3,
    port_number=8080,
    service_config={"loadBalancingConfig": [{"round_robin": {}}]},
)
CTX = template_context(SNAP, "greeter-target", "ns")


def test_service_config_policies_and_merge() -> None:
    assert build_service_config("pick_first", {}) == {"loadBalancingConfig": [{"pick_first": {}}]}
    assert build_service_config("weighted_round_robin", {}) == {
        "loadBalancingConfig": [{"weighted_round_robin": {}}]
    }
    merged = build_service_config(
        "round_robin",
        {
            "methodConfig": [{"name": [{"service": "x"}], "timeout": "1s"}],
            "retryThrottling": {"maxTokens": 10},
        },
    )
    assert merged["loadBalancingConfig"] == [{"round_robin": {}}]
    assert merged["retryThrottling"] == {"maxTokens": 10}
    override = build_service_config("round_robin", {"loadBalancingConfig": [{"pick_first": {}}]})
    assert override["loadBalancingConfig"] == [{"pick_first": {}}]
    nested = build_service_config("round_robin", {"a": {"b": 1}})
    assert build_service_config("round_robin", {"a": {"c": 2}, **nested})["a"] == {"b": 1}


def test_templates_see_the_snapshot() -> None:
    out = render_templates(
        {
            "list.txt": "{% for e in readyEndpoints %}{{ e.address }}:{{ e.port }}\n{% endfor %}",
            "meta.txt": "{{ serverName }} {{ revision }} {{ target.portName }} "
            "{{ grpcTarget.name }}",
            "all.json": "{{ endpoints | tojson }}",
        },
        CTX,
    )
    assert out["list.txt"] == "10.0.0.1:50051\n"
    assert out["meta.txt"] == "greeter.ns 3 grpc greeter-target"
    assert [e["address"] for e in json.loads(out["all.json"])] == ["10.0.0.1", "10.0.0.2"]


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("{{ missing }}", "UndefinedVariable"),
        ("{{ target.nope }}", "UndefinedVariable"),
        ("{% for %}", "TemplateSyntaxError"),
        ("{{ ''.__class__.__mro__ }}", "SandboxViolation"),
        ("{{ revision.__class__.__subclasses__() }}", "SandboxViolation"),
        ("{{ cycler.__init__.__globals__ }}", "SandboxViolation"),
        ("{{ 'x' * 10000000 }}", "SandboxViolation"),
        ("{{ [1] * 10000000 }}", "SandboxViolation"),
        ("{{ 2 ** 100000 }}", "SandboxViolation"),
        ("{{ 1 / 0 }}", "TemplateError"),
        ("{% for i in range(2000) %}{{ 'y' * 1000 }}{% endfor %}", "TooLarge"),
    ],
)
def test_bad_templates_raise_a_typed_error(source: str, reason: str) -> None:
    with pytest.raises(RenderError) as exc:
        render_templates({"good": "ok", "bad.txt": source}, CTX)
    assert exc.value.reason == reason
    assert exc.value.key == "bad.txt"
    assert str(exc.value).startswith("bad.txt: ")


def test_size_budget_is_shared_by_all_templates() -> None:
    half = "{% for i in range(600) %}" + "z" * 1000 + "{% endfor %}"
    with pytest.raises(RenderError) as exc:
        render_templates({"a": half, "b": half}, CTX)
    assert exc.value.reason == "TooLarge"


def test_build_data_holds_the_contract_and_refuses_oversize() -> None:
    data = build_data(SNAP, {"extra": "x"})
    assert set(data) == {ENDPOINTS_KEY, SERVICE_CONFIG_KEY, "extra"}
    assert decode(data[ENDPOINTS_KEY]) == SNAP
    assert json.loads(data[SERVICE_CONFIG_KEY]) == SNAP.service_config
    assert build_data(SNAP, {"extra": "x"}) == data  # deterministic
    with pytest.raises(RenderError, match="over the limit") as exc:
        build_data(SNAP, {"big": "b" * MAX_CONFIGMAP_BYTES})
    assert exc.value.reason == "TooLarge"
    assert configmap_size({"ab": "cd"}) == 4


def test_build_configmap_owner_and_labels() -> None:
    target = parse_spec("t" * 70, "ns", {"service": "greeter", "configMapName": "cm"})
    cm = build_configmap(target, "uid-1", {"k": "v"})
    assert cm["metadata"]["name"] == "cm"
    assert cm["metadata"]["namespace"] == "ns"
    assert cm["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "kuberesolver"
    assert len(cm["metadata"]["labels"]["kuberesolver.io/target"]) == 63
    (ref,) = cm["metadata"]["ownerReferences"]
    assert ref == {
        "apiVersion": "kuberesolver.io/v1alpha1",
        "kind": "GrpcTarget",
        "name": "t" * 70,
        "uid": "uid-1",
        "controller": True,
        "blockOwnerDeletion": False,
    }
    assert is_owned_by(cm, "uid-1")
    assert not is_owned_by(cm, "uid-2")
    assert controller_uid({"metadata": {}}) is None
    assert not is_owned_by({"metadata": {"ownerReferences": [{"uid": "uid-1"}]}}, "uid-1")
