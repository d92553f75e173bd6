"""The apiserver itself refuses GrpcTargets it could never publish (CRD schema and CEL rules).

No operator runs here: the refusal happens at admission, so a bad name never
reaches a write that the apiserver would refuse (422) over and over.
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from tests.integration.operator.helpers import create_target, get_target

pytestmark = pytest.mark.integration


def refusal(api: client.ApiClient, namespace: str, spec: dict[str, Any]) -> str:
    with pytest.raises(client.ApiException) as exc:
        create_target(api, namespace, "bad", spec)
    assert exc.value.status == 422, exc.value.body
    return str(exc.value.body)


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ({"configMapName": "a..b"}, "must be a DNS subdomain"),
        ({"configMapName": "a.-b"}, "must be a DNS subdomain"),
        ({"configMapName": "a-.b"}, "must be a DNS subdomain"),
        ({"templates": {"a b": "x"}}, "valid ConfigMap key"),
        ({"templates": {"..data": "x"}}, "valid ConfigMap key"),
        ({"templates": {".": "x"}}, "valid ConfigMap key"),
        ({"templates": {"k/v": "x"}}, "valid ConfigMap key"),
        ({"templates": {"endpoints.json": "x"}}, "operator's own keys"),
        ({"serviceConfig": {"loadBalancingConfig": "round_robin"}}, "loadBalancingConfig"),
        ({"serviceConfig": {"loadBalancingConfig": ["round_robin"]}}, "loadBalancingConfig"),
        ({"serviceConfig": {"loadBalancingConfig": [{}]}}, "loadBalancingConfig"),
        ({"serviceConfig": {"loadBalancingConfig": []}}, "loadBalancingConfig"),
    ],
)
def test_refused_at_admission(
    admin_api: client.ApiClient, namespace: str, spec: dict[str, Any], says: str
) -> None:
    assert says in refusal(admin_api, namespace, {"service": "svc", **spec})


def test_good_names_pass(admin_api: client.ApiClient, namespace: str) -> None:
    spec = {
        "service": "svc",
        "configMapName": "greeter.endpoints-1",
        "templates": {"envoy.yaml": "x", "a_b-c.1": "y", ".hidden": "z"},
        "serviceConfig": {
            "loadBalancingConfig": [{"weighted_round_robin": {}}, {"round_robin": {}}]
        },
    }
    create_target(admin_api, namespace, "good", spec)
    assert (
        get_target(admin_api, namespace, "good")["spec"]["configMapName"] == "greeter.endpoints-1"
    )
