"""Templates and bad input: Rendered=False, an Event, and the last good ConfigMap kept."""

from __future__ import annotations

import pytest

from testenv.netns import pod_ip
from testenv.operator_process import OperatorProcess
from testenv.wait import until
from tests.integration.operator.helpers import (
    Namespace,
    condition,
    ep,
)

pytestmark = pytest.mark.integration

ENVOY_LIKE = (
    "{% for e in readyEndpoints %}{{ e.address }}:{{ e.port }}\n{% endfor %}"
    "# {{ serverName }} r{{ revision }} {{ grpcTarget.name }}\n"
)


def test_templates_render_and_failures_keep_the_last_good_configmap(
    ns: Namespace, operator: OperatorProcess
) -> None:
    ns.service("tpl")
    ns.make_slice("tpl", "tpl-1", [ep(pod_ip(91)), ep(pod_ip(92), ready=False)])
    templates = {"backends.txt": ENVOY_LIKE, "all.json": "{{ endpoints | tojson }}"}
    ns.create_target("tpl", {"service": "tpl", "templates": templates})

    def rendered() -> dict[str, str]:
        cm = ns.get_configmap("tpl")
        assert cm is not None
        assert "backends.txt" in (cm.data or {})
        return dict(cm.data)

    data = until(rendered, timeout_s=60, message="rendered keys")
    assert data["backends.txt"].startswith(f"{pod_ip(91)}:50051\n# tpl.{ns.name} r1 tpl\n")
    assert pod_ip(92) in data["all.json"]
    good = ns.get_configmap("tpl")
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
        ns.patch_target("tpl", {"templates": {"backends.txt": source}})
        t = ns.wait_condition("tpl", "Rendered", reason=reason)
        assert condition(t, "Rendered")["status"] == "False"
        assert condition(t, "Ready")["status"] == "False"
        assert "backends.txt" in condition(t, "Rendered")["message"]
        ns.wait_event("tpl", reason=reason)

    # While the templates were broken, endpoint changes were not published either:
    # the ConfigMap is the last good one, byte for byte.
    ns.make_slice("tpl", "tpl-1", [ep(pod_ip(93))])
    until(
        lambda: ns.get_target("tpl")["status"]["observedGeneration"] >= 6,
        timeout_s=30,
        message="the last spec observed",
    )
    cm = ns.get_configmap("tpl")
    assert cm is not None
    assert cm.metadata.resource_version == good_rv
    assert cm.data == data

    # Fixed: published again, with the new endpoints.
    ns.patch_target("tpl", {"templates": {"backends.txt": ENVOY_LIKE}})
    ns.wait_condition("tpl", "Rendered", reason="Rendered")
    data = until(rendered, timeout_s=30, message="rendered again")
    assert data["backends.txt"].startswith(f"{pod_ip(93)}:50051\n")


# A reserved key (endpoints.json) is refused at admission: see test_admission.py.
