"""The chart's conventions, on the objects ``helm template`` renders over a values matrix.

No cluster: every test parses the rendered YAML and checks kinds, names, rules
and fields. test_helm.py installs the chart into a real apiserver.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from testenv.tools import UserShell
from tests.adoption.chart import (
    CHART,
    comparable,
    container,
    env_of,
    grants,
    helm_args,
    key,
    kustomize,
    one,
    refused,
    render,
)
from tests.adoption.conftest import ROOT
from tests.adoption.rbac_calls import expected_grants, feature_calls

pytestmark = pytest.mark.integration

NAMESPACED_RESOURCES = frozenset(
    {"grpctargets", "grpctargets/status", "services", "endpointslices", "configmaps",
     "events", "pods", "secrets", "leases"}
)  # fmt: skip

# Every value set the chart is linted with: each feature on and off.
MATRIX: list[dict[str, Any]] = [
    {},
    {"replicas": 1, "webhook.enabled": False, "metrics.port": 0},
    {"webhook.tls.mode": "certManager", "webhook.failurePolicy": "Fail"},
    {"xds.enabled": True, "xds.certSecret": "xds-tls", "xds.auth": "token",
     "xds.mutualTLS": True},
    {"xds.enabled": True, "xds.podReadiness": False},
    {"watchNamespaces": ["shop", "tenant"], "xds.enabled": True},
    {"rbac.create": False, "serviceAccount.create": False, "serviceAccount.name": "mine"},
    {"fullnameOverride": "other", "crds.install": False, "networkPolicy.enabled": False,
     "podDisruptionBudget.enabled": False, "metrics.serviceMonitor.enabled": True},
    {"image.registry": "ghcr.io/acme", "image.digest": "sha256:" + "a" * 64,
     "extraEnv": [{"name": "X", "value": "1"}], "extraArgs": ["--verbose"],
     "extraVolumes": [{"name": "v", "emptyDir": {}}],
     "extraVolumeMounts": [{"name": "v", "mountPath": "/v"}],
     "podLabels": {"team": "a"}, "podAnnotations": {"a": "b"}},
    {"prometheusRule.enabled": True, "prometheusRule.labels": {"release": "prom"},
     "prometheusRule.alertLabels": {"team": "platform"}, "logFormat": "json"},
    {"prometheusRule.enabled": True, "webhook.enabled": False,
     "prometheusRule.selector": 'job="kr"', "prometheusRule.certificateExpiryDays": 3},
]  # fmt: skip


@pytest.mark.parametrize("values", MATRIX, ids=lambda v: ",".join(v) or "defaults")
def test_helm_lint_strict(offline: UserShell, values: dict[str, Any]) -> None:
    result = offline.run(f"helm lint --strict charts/kuberesolver {helm_args(values)}")
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout, str(result)


# --- naming: two releases side by side -----------------------------------------------------


def test_two_releases_coexist_without_a_shared_name(offline: UserShell) -> None:
    first = render(offline, {"fullnameOverride": "alpha"}, release="alpha")
    second = render(offline, {"fullnameOverride": "beta", "crds.install": False}, release="beta")
    assert not {key(o) for o in first} & {key(o) for o in second}
    for objects, full in ((first, "alpha"), (second, "beta")):
        for obj in objects:
            if obj["kind"] != "CustomResourceDefinition":
                assert obj["metadata"]["name"].startswith(f"{full}-"), key(obj)
    # Neither release selects the other's Pods.
    for mine, theirs in ((first, second), (second, first)):
        selector = one(mine, "Deployment")["spec"]["selector"]["matchLabels"]
        pod_labels = one(theirs, "Deployment")["spec"]["template"]["metadata"]["labels"]
        assert not selector.items() <= pod_labels.items()
        for service in (o for o in mine if o["kind"] == "Service"):
            assert not service["spec"]["selector"].items() <= pod_labels.items()


@pytest.mark.parametrize(
    ("values", "release", "full"),
    [
        ({}, "kuberesolver", "kuberesolver"),
        ({}, "tenant-a", "tenant-a-kuberesolver"),
        ({"nameOverride": "kr"}, "tenant-a", "tenant-a-kr"),
        ({}, "r" * 50, "r" * 42),
    ],
)
def test_the_names_the_operator_reads_match_the_objects(
    offline: UserShell, values: dict[str, Any], release: str, full: str
) -> None:
    """The Lease, the webhook's Service, Secret and configuration, and the xDS Service
    the operator is told of are the objects the release renders and grants."""
    objects = render(offline, {**values, "xds.enabled": True}, release=release, namespace="ops")
    env = env_of(objects)
    operator = f"{full}-operator"
    assert one(objects, "Deployment")["metadata"]["name"] == operator
    assert env["KUBERESOLVER_LEASE_NAME"] == operator
    leader = one(objects, "Role", f"{operator}-leader")
    assert [r.get("resourceNames") for r in leader["rules"]] == [None, [operator]]
    config = one(objects, "MutatingWebhookConfiguration", env["KUBERESOLVER_WEBHOOK_CONFIGURATION"])
    (hook,) = config["webhooks"]
    assert hook["clientConfig"]["service"] == {
        "name": env["KUBERESOLVER_WEBHOOK_SERVICE"], "namespace": "ops",
        "path": "/mounts.kuberesolver.io", "port": 443,
    }  # fmt: skip
    one(objects, "Service", env["KUBERESOLVER_WEBHOOK_SERVICE"])
    tls_role = one(objects, "Role", f"{operator}-webhook-tls")
    assert tls_role["rules"][1]["resourceNames"] == [env["KUBERESOLVER_WEBHOOK_SECRET"]]
    tls_cluster_role = one(objects, "ClusterRole", f"{operator}-webhook-tls")
    assert tls_cluster_role["rules"][0]["resourceNames"] == [config["metadata"]["name"]]
    xds_host, xds_port = env["KUBERESOLVER_XDS_INJECT_SERVER"].rsplit(":", 1)
    xds = one(objects, "Service", f"{full}-xds")
    assert xds_host == f"{full}-xds.ops.svc"
    assert int(xds_port) == xds["spec"]["ports"][0]["port"]
    for obj in objects:
        assert len(obj["metadata"]["name"]) <= 63, key(obj)


# --- identity ------------------------------------------------------------------------------


def test_rbac_create_false_renders_no_rbac(offline: UserShell) -> None:
    objects = render(offline, {"rbac.create": False, "xds.enabled": True, "xds.auth": "token",
                               "xds.certSecret": "s", "watchNamespaces": ["a"]})  # fmt: skip
    kinds = {o["kind"] for o in objects}
    assert not kinds & {"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"}, kinds
    assert "ServiceAccount" in kinds


def test_service_account_values(offline: UserShell) -> None:
    objects = render(offline, {"serviceAccount.annotations": {"iam/role": "r"}})
    account = one(objects, "ServiceAccount")
    assert account["metadata"]["annotations"] == {"iam/role": "r"}
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["metadata"]["name"]

    objects = render(offline, {"serviceAccount.create": False, "serviceAccount.name": "mine"})
    assert not [o for o in objects if o["kind"] == "ServiceAccount"]
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "mine"
    for binding in (o for o in objects if o["kind"] in ("RoleBinding", "ClusterRoleBinding")):
        assert [s["name"] for s in binding["subjects"]] == ["mine"], key(binding)
    (policy,) = (o for o in objects if o["kind"] == "ValidatingAdmissionPolicy")
    (condition,) = policy["spec"]["matchConditions"]
    assert condition["expression"].endswith(":mine'"), condition


# --- RBAC per feature and per mode ---------------------------------------------------------

FEATURES = [
    dict(zip(("webhook.enabled", "webhook.tls.mode", "xds.enabled", "xds.podReadiness",
              "xds.auth"), combo, strict=True))
    for combo in itertools.product((True, False), ("self", "certManager"), (True, False),
                                   (True, False), ("none", "token"))
]  # fmt: skip


@pytest.mark.parametrize("watched", [[], ["shop", "tenant"]], ids=["cluster", "namespaced"])
@pytest.mark.parametrize("features", FEATURES, ids=lambda f: ",".join(f"{v}" for v in f.values()))
def test_rbac_is_the_minimal_set_for_the_features_on(
    offline: UserShell, features: dict[str, Any], watched: list[str]
) -> None:
    values = {**features, "xds.certSecret": "xds-tls", "watchNamespaces": watched}
    objects = render(offline, values, release="kr", namespace="ops")
    granted = grants(objects, "kr-kuberesolver-operator", "ops")
    assert granted == expected_grants(feature_calls(values), "kr-kuberesolver", "ops", watched)
    # Every Role and ClusterRole is bound, and every binding's role is rendered.
    roles = {(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"])
             for o in objects if o["kind"] in ("Role", "ClusterRole")}  # fmt: skip
    bound = {
        (b["roleRef"]["kind"], b["metadata"].get("namespace", ""), b["roleRef"]["name"])
        for b in objects if b["kind"] in ("RoleBinding", "ClusterRoleBinding")
    }  # fmt: skip
    assert roles == bound


def test_namespaced_mode_grants_namespaced_resources_only_by_role(offline: UserShell) -> None:
    objects = render(offline, {"watchNamespaces": ["shop", "tenant"], "xds.enabled": True})
    for role in (o for o in objects if o["kind"] == "ClusterRole"):
        for rule in role["rules"]:
            assert not NAMESPACED_RESOURCES & set(rule["resources"]), (key(role), rule)
    cluster = one(objects, "ClusterRole", "kuberesolver-operator")
    assert cluster["rules"] == [
        {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
         "verbs": ["list", "watch"]}
    ]  # fmt: skip
    for ns in ("shop", "tenant"):
        one([o for o in objects if o["metadata"].get("namespace") == ns], "Role",
            "kuberesolver-operator")  # fmt: skip
        one([o for o in objects if o["metadata"].get("namespace") == ns], "Role",
            "kuberesolver-operator-xds-pods")  # fmt: skip
    args = container(objects)["args"]
    assert "--namespace=shop" in args
    assert "--namespace=tenant" in args
    assert "--all-namespaces" not in args
    env = {e["name"]: e.get("value") for e in container(objects)["env"]}
    assert env["KUBERESOLVER_WATCH_NAMESPACES"] == "shop,tenant"
    (hook,) = one(objects, "MutatingWebhookConfiguration")["webhooks"]
    assert hook["namespaceSelector"] == {"matchExpressions": [
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["shop", "tenant"]}
    ]}  # fmt: skip


# --- availability and traffic --------------------------------------------------------------


@pytest.mark.parametrize(("replicas", "rendered"), [(0, False), (1, False), (2, True), (3, True)])
def test_pdb_only_with_more_than_one_replica(
    offline: UserShell, replicas: int, rendered: bool
) -> None:
    objects = render(offline, {"replicas": replicas, "webhook.enabled": False})
    pdbs = [o for o in objects if o["kind"] == "PodDisruptionBudget"]
    assert bool(pdbs) is rendered
    if rendered:
        (pdb,) = pdbs
        assert pdb["spec"]["minAvailable"] == 1
        labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


@pytest.mark.parametrize(
    ("metrics", "webhook", "xds"), list(itertools.product((0, 9090), (True, False), (True, False)))
)
def test_network_policy_opens_only_the_ports_of_enabled_features(
    offline: UserShell, metrics: int, webhook: bool, xds: bool
) -> None:
    objects = render(offline, {"metrics.port": metrics, "webhook.enabled": webhook,
                               "xds.enabled": xds})  # fmt: skip
    opened = set()
    for policy in (o for o in objects if o["kind"] == "NetworkPolicy"):
        assert policy["spec"]["policyTypes"] == ["Ingress"]
        for rule in policy["spec"]["ingress"]:
            assert set(rule) == {"ports"}, rule  # from anywhere, to these ports only
            opened.update(p["port"] for p in rule["ports"])
    expected = {"health", "ready"}
    expected |= {"metrics"} if metrics else set()
    expected |= {"webhook"} if webhook else set()
    expected |= {"xds"} if xds else set()
    assert opened == expected
    named = {p["name"] for p in container(objects)["ports"]}
    assert opened == named  # every opened name is a container port, and no port is left shut


def test_network_policy_can_be_off(offline: UserShell) -> None:
    objects = render(offline, {"networkPolicy.enabled": False, "xds.enabled": True})
    assert not [o for o in objects if o["kind"] == "NetworkPolicy"]


# --- the Pod -------------------------------------------------------------------------------


def test_image_registry_tag_and_digest(offline: UserShell) -> None:
    env = env_of(objects := render(offline))
    assert container(objects)["image"] == "kuberesolver-operator:0.1.0"
    assert env["KUBERESOLVER_PROJECTOR_IMAGE"] == "kuberesolver-projector:0.1.0"
    digest = "sha256:" + "0123456789abcdef" * 4
    objects = render(offline, {
        "image.registry": "ghcr.io/acme/", "image.tag": "1.2.3",
        "projector.image.registry": "registry.local:5000", "projector.image.digest": digest,
        "projector.image.tag": "ignored", "projector.image.pullPolicy": "Always",
    })  # fmt: skip
    assert container(objects)["image"] == "ghcr.io/acme/kuberesolver-operator:1.2.3"
    env = env_of(objects)
    assert (
        env["KUBERESOLVER_PROJECTOR_IMAGE"]
        == f"registry.local:5000/kuberesolver-projector@{digest}"
    )
    assert env["KUBERESOLVER_PROJECTOR_IMAGE_PULL_POLICY"] == "Always"
    objects = render(offline, {"image.digest": digest, "image.tag": "ignored"})
    assert container(objects)["image"] == f"kuberesolver-operator@{digest}"


def test_pod_labels_annotations_and_extras(offline: UserShell) -> None:
    objects = render(offline, {
        "podLabels": {"team": "payments"}, "podAnnotations": {"note": "x"},
        "extraEnv": [{"name": "HTTPS_PROXY", "value": "http://proxy:3128"},
                     {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
        "extraArgs": ["--verbose"], "revisionHistoryLimit": 3,
        "extraVolumes": [{"name": "ca", "configMap": {"name": "corp-ca"}}],
        "extraVolumeMounts": [{"name": "ca", "mountPath": "/etc/corp-ca", "readOnly": True}],
    })  # fmt: skip
    deployment = one(objects, "Deployment")
    template = deployment["spec"]["template"]
    assert deployment["spec"]["revisionHistoryLimit"] == 3
    assert template["metadata"]["labels"]["team"] == "payments"
    assert "team" not in deployment["spec"]["selector"]["matchLabels"]
    assert template["metadata"]["annotations"]["note"] == "x"
    c = container(objects)
    assert c["env"][-2:] == [
        {"name": "HTTPS_PROXY", "value": "http://proxy:3128"},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
    ]
    assert c["args"][-3:] == ["--verbose", "-m", "kuberesolver.operator"]
    assert {"name": "ca", "configMap": {"name": "corp-ca"}} in template["spec"]["volumes"]
    assert {"name": "ca", "mountPath": "/etc/corp-ca", "readOnly": True} in c["volumeMounts"]


def test_security_context_sets_no_uid_and_can_be_overridden(offline: UserShell) -> None:
    """Under OpenShift's restricted-v2 the platform assigns the UID: the chart sets none,
    and runAsNonRoot holds because the image's USER is numeric and not 0."""
    objects = render(offline)
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"] == {"runAsNonRoot": True,
                                      "seccompProfile": {"type": "RuntimeDefault"}}  # fmt: skip
    assert container(objects)["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }  # fmt: skip
    users = re.findall(r"^USER\s+(\S+)", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert users
    assert all(re.fullmatch(r"[1-9][0-9]*(:[0-9]+)?", u) for u in users), users
    # Keys merge with the defaults; null removes one.
    objects = render(offline, {"podSecurityContext": {"runAsUser": 1000, "fsGroup": 1000,
                                                      "seccompProfile": None}})  # fmt: skip
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"] == {"runAsNonRoot": True, "runAsUser": 1000, "fsGroup": 1000}


def test_probes_match_the_operator_endpoints(offline: UserShell) -> None:
    c = container(objects := render(offline))
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    liveness = next(a for a in c["args"] if a.startswith("--liveness="))
    assert liveness == f"--liveness=http://0.0.0.0:{ports['health']}/healthz"
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert env_of(objects)["KUBERESOLVER_READY_PORT"] == str(ports["ready"])
    for probe in ("readinessProbe", "startupProbe"):
        assert c[probe]["httpGet"] == {"path": "/readyz", "port": "ready"}
    assert c["startupProbe"]["periodSeconds"] * c["startupProbe"]["failureThreshold"] == 300
    c = container(render(offline, {"readinessProbe.enabled": False, "startupProbe.enabled": False,
                                   "livenessProbe.periodSeconds": 7}))  # fmt: skip
    assert "readinessProbe" not in c
    assert "startupProbe" not in c
    assert c["livenessProbe"]["periodSeconds"] == 7


# --- the webhook ---------------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["Ignore", "Fail"])
def test_webhook_failure_policy(offline: UserShell, policy: str) -> None:
    (hook,) = one(render(offline, {"webhook.failurePolicy": policy}),
                  "MutatingWebhookConfiguration")["webhooks"]  # fmt: skip
    assert hook["failurePolicy"] == policy


def test_failure_policy_fail_needs_two_replicas(offline: UserShell) -> None:
    error = refused(offline, {"webhook.failurePolicy": "Fail", "replicas": 1})
    assert "webhook.failurePolicy=Fail" in error
    assert "replicas >= 2" in error


# --- observability: alerts and logs -------------------------------------------------------

ALERTS = {
    "KuberesolverOperatorDown",
    "KuberesolverNoLeader",
    "KuberesolverConfigMapWriteErrors",
    "KuberesolverWebhookCertificateExpiring",
}


def alert_rules(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    (group,) = one(objects, "PrometheusRule")["spec"]["groups"]
    return {r["alert"]: r for r in group["rules"]}


def operator_series() -> set[str]:
    """Every series name the operator's registry exposes (histograms and counters with
    their suffixes), and Prometheus' own ``up``."""
    from kuberesolver.operator.runtime.metrics import Metrics

    metrics = Metrics(process=False)
    metrics.follow_certificate(lambda: 1.0)
    return {s.name for m in metrics.registry.collect() for s in m.samples} | {"up"}


def test_the_prometheus_rule_is_off_by_default(offline: UserShell) -> None:
    assert not [o for o in render(offline) if o["kind"] == "PrometheusRule"]


def test_the_prometheus_rule_alerts_on_series_the_operator_exposes(offline: UserShell) -> None:
    objects = render(offline, {"prometheusRule.enabled": True,
                               "prometheusRule.labels": {"release": "prom"},
                               "prometheusRule.alertLabels": {"team": "platform"}},
                     namespace="ops")  # fmt: skip
    rule = one(objects, "PrometheusRule")
    assert rule["metadata"]["namespace"] == "ops"
    assert rule["metadata"]["labels"]["release"] == "prom"
    alerts = alert_rules(objects)
    assert set(alerts) == ALERTS
    # The series of this release: what the ServiceMonitor's scrapes of its Service carry.
    metrics_service = one(objects, "Service", "kuberesolver-operator-metrics")["metadata"]["name"]
    selector = f'job="{metrics_service}",namespace="ops"'
    known = operator_series()
    for name, alert in alerts.items():
        expr = alert["expr"]
        assert selector in expr, (name, expr)
        used = set(re.findall(r"([a-z_:]+)\{", expr)) - {"by"}
        assert used, (name, expr)
        assert used <= known, (name, used - known)
        assert alert["labels"]["team"] == "platform"
        assert alert["labels"]["severity"] in ("critical", "warning")
        assert alert["annotations"]["summary"], name
    assert "absent(up{" in alerts["KuberesolverOperatorDown"]["expr"]
    assert "kuberesolver_operator_leader" in alerts["KuberesolverNoLeader"]["expr"]
    expiring = alerts["KuberesolverWebhookCertificateExpiring"]["expr"]
    assert expiring.endswith(f"< {14 * 86400}")
    # Prometheus' own template syntax reaches Prometheus, not Helm.
    errors = alerts["KuberesolverConfigMapWriteErrors"]
    assert "{{ $labels.reason }}" in errors["annotations"]["summary"]


def test_the_prometheus_rule_follows_the_webhook_and_its_values(offline: UserShell) -> None:
    alerts = alert_rules(render(offline, {
        "prometheusRule.enabled": True, "webhook.enabled": False,
        "prometheusRule.selector": 'cluster="a"', "prometheusRule.downFor": "2m",
    }))  # fmt: skip
    assert set(alerts) == ALERTS - {"KuberesolverWebhookCertificateExpiring"}
    assert all('{cluster="a"}' in a["expr"] for a in alerts.values())
    assert alerts["KuberesolverOperatorDown"]["for"] == "2m"
    alerts = alert_rules(render(offline, {"prometheusRule.enabled": True,
                                          "prometheusRule.certificateExpiryDays": 3}))  # fmt: skip
    assert alerts["KuberesolverWebhookCertificateExpiring"]["expr"].endswith(f"< {3 * 86400}")


def test_the_manifests_carry_the_charts_prometheus_rule(offline: UserShell) -> None:
    """manifests/optional/prometheusrule.yaml, for kustomize users, is the chart's rule."""
    chart = [one(render(offline, {"prometheusRule.enabled": True}), "PrometheusRule")]
    manifest = yaml.safe_load((ROOT / "manifests/optional/prometheusrule.yaml").read_text())
    assert comparable(chart) == comparable([manifest])


def test_the_prometheus_rule_needs_the_metrics_port(offline: UserShell) -> None:
    error = refused(offline, {"prometheusRule.enabled": True, "metrics.port": 0})
    assert "prometheusRule.enabled needs metrics.port" in error


@pytest.mark.parametrize(
    ("values", "flag"), [({}, "--log-format=full"), ({"logFormat": "json"}, "--log-format=json")]
)
def test_log_format_is_kopfs_flag(offline: UserShell, values: dict[str, Any], flag: str) -> None:
    args = container(render(offline, values))["args"]
    assert [a for a in args if a.startswith("--log-format")] == [flag]
    assert args.index(flag) < args.index("-m")


# --- CRDs ----------------------------------------------------------------------------------


def test_the_crd_is_installed_upgraded_and_kept(offline: UserShell) -> None:
    source = yaml.safe_load((ROOT / "crds" / "grpctarget.yaml").read_text())
    crd = one(render(offline), "CustomResourceDefinition")
    assert crd["spec"] == source["spec"]
    assert crd["metadata"]["name"] == source["metadata"]["name"]
    assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    assert source["metadata"]["labels"].items() <= crd["metadata"]["labels"].items()
    crd = one(render(offline, {"crds.keep": False}), "CustomResourceDefinition")
    assert "annotations" not in crd["metadata"]
    objects = render(offline, {"crds.install": False})
    assert not [o for o in objects if o["kind"] == "CustomResourceDefinition"]


def test_the_chart_carries_the_crds_unchanged() -> None:
    """files/crds/ links to crds/ (the one source), and Helm's crds/ is not used."""
    assert not (CHART / "crds").exists()
    for path in (CHART / "files" / "crds").glob("*.yaml"):
        assert path.is_symlink()
        assert path.resolve() == (ROOT / "crds" / path.name).resolve()
    assert {p.name for p in (CHART / "files" / "crds").glob("*.yaml")} == {
        p.name for p in (ROOT / "crds").glob("*.yaml")
    }


# --- the schema ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"replica": 2}, "replica"),  # a typo of replicas
        ({"replicas": -1}, "replicas"),
        ({"webhook.failurePolicy": "Sometimes"}, "failurePolicy"),
        ({"webhook.tls.mode": "vault"}, "mode"),
        ({"webhook.timeoutSeconds": 31}, "timeoutSeconds"),
        ({"xds.auth": "basic"}, "auth"),
        ({"image.digest": "latest"}, "digest"),
        ({"fullnameOverride": "Upper"}, "fullnameOverride"),
        ({"watchNamespaces": ["a", "a"]}, "watchNamespaces"),
        ({"settings": {"DEBUG": "1"}}, "KUBERESOLVER_"),  # names a KUBERESOLVER_ variable
        ({"podDisruptionBudget.minAvailable": "half"}, "minAvailable"),
        ({"logFormat": "xml"}, "logFormat"),
        ({"prometheusRule.downFor": "soon"}, "downFor"),
    ],
    ids=lambda v: ",".join(v) if isinstance(v, dict) else None,
)
def test_the_schema_refuses_a_bad_value(
    offline: UserShell, values: dict[str, Any], where: str
) -> None:
    error = refused(offline, values)
    assert "schema" in error, error
    assert where in error, error


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"xds.enabled": True, "xds.auth": "token"}, "xds.auth=token needs xds.certSecret"),
        ({"xds.enabled": True, "xds.mutualTLS": True}, "xds.mutualTLS needs xds.certSecret"),
    ],
)
def test_combinations_the_schema_cannot_express_are_refused(
    offline: UserShell, values: dict[str, Any], message: str
) -> None:
    assert message in refused(offline, values)


# --- the same objects as kustomize's manifests/ -------------------------------------------


@pytest.mark.parametrize(
    ("values", "components"),
    [
        ({}, ()),
        ({"webhook.tls.mode": "certManager"}, ("cert-manager",)),
        ({"webhook.enabled": False}, ("no-webhook",)),
        ({"watchNamespaces": ["shop", "tenant"]}, ("namespaced",)),
        ({"xds.enabled": True, "xds.podReadiness": False}, ("xds",)),
        ({"xds.enabled": True}, ("xds", "xds-pod-readiness")),
        (
            {"xds.enabled": True, "xds.certSecret": "kuberesolver-xds-tls", "xds.auth": "token"},
            ("xds", "xds-pod-readiness", "xds-tls", "xds-token-auth"),
        ),
    ],
    ids=lambda v: ",".join(v) if isinstance(v, tuple) else None,
)
def test_the_chart_renders_manifests_with_the_same_components(
    offline: UserShell, tmp_path: Path, values: dict[str, Any], components: tuple[str, ...]
) -> None:
    """Each kustomize component is the chart's value for the same feature."""
    chart = [o for o in render(offline, values) if o["kind"] != "CustomResourceDefinition"]
    base = [o for o in kustomize(offline, tmp_path, *components) if o["kind"] != "Namespace"]
    chart_objects, base_objects = comparable(chart), comparable(base)
    assert sorted(chart_objects) == sorted(base_objects)
    for k, obj in base_objects.items():
        assert chart_objects[k] == obj, k
