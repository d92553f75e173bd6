"""Templates and bad input: Rendered=False, an Event, and the last good ConfigMap kept."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from testenv.netns import pod_ip
from testenv.operator_process import OperatorProcess
from testenv.wait import until
from tests.operator.helpers import (
    condition,
    create_target,
    ep,
    events_for,
    get_configmap,
    get_target,
    make_slice,
    patch_target,
    selectorless_service,
)

pytestmark = pytest.mark.integration

ENVOY_LIKE = (
    "{% for e in readyEndpoints %}{{ e.address }}:{{ e.port }}\n{% endfor %}"
    "# {{ serverName }} r{{ revision }} {{ grpcTarget.name }}\n"
)


def wait_reason(api: client.ApiClient, namespace: str, name: str, type_: str, reason: str) -> Any:
    def check() -> dict[str, Any]:
        t = get_target(api, namespace, name)
        c = condition(t, type_)
        assert c.get("reason") == reason, f"{type_}: {c}"
        return t

    return until(check, timeout_s=60, message=f"{type_} reason {reason}")


def test_templates_render_and_failures_keep_the_last_good_configmap(
    admin_api: client.ApiClient, namespace: str, operator: OperatorProcess
) -> None:
    selectorless_service(admin_api, namespace, "tpl")
    make_slice(admin_api, namespace, "tpl", "tpl-1", [ep(pod_ip(91)), ep(pod_ip(92), ready=False)])
    templates = {"backends.txt": ENVOY_LIKE, "all.json": "{{ endpoints | tojson }}"}
    create_target(admin_api, namespace, "tpl", {"service": "tpl", "templates": templates})

    def rendered() -> dict[str, str]:
        cm = get_configmap(admin_api, namespace, "tpl")
        assert cm is not None
        assert "backends.txt" in (cm.data or {})
        return dict(cm.data)

    data = until(rendered, timeout_s=60, message="rendered keys")
    assert data["backends.txt"].startswith(f"{pod_ip(91)}:50051\n# tpl.{namespace} r1 tpl\n")
    assert pod_ip(92) in data["all.json"]
    good = get_configmap(admin_api, namespace, "tpl")
    assert good is not None
    good_rv = good.metadata.resource_version

    cases = [
        ("{{ nope.missing }}", "UndefinedVariable"),
        ("{% for x in %}", "TemplateSyntaxError"),
        ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "SandboxViolation"),
        ("{{ 'x' * 2000000 }}", "SandboxViolation"),
        ("{% for i in range(3000) %}{{ '%0500d' % i }}{% endfor %}", "TooLarge"),
    ]
    for source, reason in cases:
        patch_target(admin_api, namespace, "tpl", {"templates": {"backends.txt": source}})
        t = wait_reason(admin_api, namespace, "tpl", "Rendered", reason)
        assert condition(t, "Rendered")["status"] == "False"
        assert condition(t, "Ready")["status"] == "False"
        assert "backends.txt" in condition(t, "Rendered")["message"]
        until(
            lambda r=reason: any(e.reason == r for e in events_for(admin_api, namespace, "tpl")),
            timeout_s=30,
            message=f"a {reason} Event",
        )

    # While the templates were broken, endpoint changes were not published either:
    # the ConfigMap is the last good one, byte for byte.
    make_slice(admin_api, namespace, "tpl", "tpl-1", [ep(pod_ip(93))])
    until(
        lambda: get_target(admin_api, namespace, "tpl")["status"]["observedGeneration"] >= 6,
        timeout_s=30,
        message="the last spec observed",
    )
    cm = get_configmap(admin_api, namespace, "tpl")
    assert cm is not None
    assert cm.metadata.resource_version == good_rv
    assert cm.data == data

    # Fixed: published again, with the new endpoints.
    patch_target(admin_api, namespace, "tpl", {"templates": {"backends.txt": ENVOY_LIKE}})
    wait_reason(admin_api, namespace, "tpl", "Rendered", "Rendered")
    data = until(rendered, timeout_s=30, message="rendered again")
    assert data["backends.txt"].startswith(f"{pod_ip(93)}:50051\n")


# A reserved key (endpoints.json) is refused at admission: tests/operator/test_admission.py.
