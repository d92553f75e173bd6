"""The chart on a real apiserver: RBAC per feature as the code uses it, then its lifecycle.

In order, on one fresh control plane:

1. ``helm install`` with every feature on (the webhook with its own TLS, xDS
   with the Pod watch and token authorisation). The operator runs as a local
   process under the release's ServiceAccount token (no kubelet here), with the
   environment of the installed Deployment: it publishes, issues the webhook's
   certificate and patches its caBundle, watches Pods, and reviews tokens; not
   one of its calls is refused. A SubjectAccessReview allows every call of
   tests/adoption/rbac_calls.py.
2. Each feature on alone (the core, the webhook with its own TLS, xDS, xDS
   with the Pod watch, xDS with token authorisation), in cluster mode and in
   namespaced mode (``watchNamespaces``): ``helm upgrade`` to it, then the
   operator runs under the release's RBAC and makes that feature's calls.
   The apiserver audits every call of a ServiceAccount: a refused one (403)
   fails the test, and so does, in namespaced mode, a list or watch of a
   namespaced resource across the cluster. The features off have no grant.
3. ``helm upgrade`` with the optional features off: their calls are refused, the
   core's still allowed.
4. A second release beside the first (another name, its own namespace, no CRD):
   both are deployed; uninstalling both leaves the CRD, a GrpcTarget and the
   ConfigMap it owns (``crds.keep``), and no RBAC.

The tests run in file order on the module's control plane.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from kuberesolver.operator.xds.auth import KubeAuthorizer
from testenv import ControlPlane
from testenv.audit import AuditLog
from testenv.controlplane import free_port
from testenv.kube import api_client, apply_object, service_account_token
from testenv.netns import pod_ip
from testenv.operator_process import OperatorProcess
from testenv.pki import CertificateAuthority
from testenv.tools import UserShell
from testenv.wait import until
from tests.adoption._kubelet import run_pod
from tests.adoption.chart import helm_args
from tests.adoption.rbac_calls import (
    CORE,
    WEBHOOK_SELF_TLS,
    XDS_PODS,
    XDS_TOKEN_AUTH,
    Call,
    feature_calls,
)

pytestmark = pytest.mark.integration

NS = "kuberesolver-system"
FULL = "kuberesolver"
ACCOUNT = f"system:serviceaccount:{NS}:{FULL}-operator"
EVERYTHING = (
    "--set xds.enabled=true --set xds.auth=token --set xds.certSecret=xds-tls"
    " --set xds.podReadiness=true --set webhook.tls.mode=self"
)
INSTALL = f"helm install kuberesolver charts/kuberesolver -n {NS} --create-namespace"
UPGRADE = f"helm upgrade kuberesolver charts/kuberesolver -n {NS}"
ALONE: dict[str, dict[str, Any]] = {
    "core": {"webhook.enabled": False},
    "webhook": {"webhook.enabled": True, "webhook.tls.mode": "self"},
    "xds": {"webhook.enabled": False, "xds.enabled": True, "xds.podReadiness": False},
    "xds-pods": {"webhook.enabled": False, "xds.enabled": True, "xds.podReadiness": True},
    "xds-token-auth": {"webhook.enabled": False, "xds.enabled": True, "xds.podReadiness": False,
                       "xds.auth": "token", "xds.certSecret": "xds-tls"},
}  # fmt: skip
"""Each optional feature on alone (values for ``helm upgrade --reset-values``)."""
MODES: dict[str, list[str]] = {"cluster": [], "namespaced": ["shop"]}
NAMESPACED = {"services", "endpointslices", "pods", "configmaps", "events", "grpctargets",
              "grpctargets/status", "secrets", "leases"}  # fmt: skip
EVERY_CALL = CORE + WEBHOOK_SELF_TLS + XDS_PODS + XDS_TOKEN_AUTH


@pytest.fixture(scope="module")
def fresh_control_plane() -> Iterator[ControlPlane]:
    """This module's own control plane, auditing every ServiceAccount's calls."""
    with ControlPlane(audit=True) as cp:
        yield cp


def allowed(api: client.ApiClient, call: Call, verb: str, namespace: str) -> bool:
    """Whether the real authorizer lets the operator's ServiceAccount make ``call``."""
    attributes = {"verb": verb, "group": call.group, "name": call.name.format(full=FULL)}
    resource, _, subresource = call.resource.partition("/")
    attributes |= {"resource": resource, "subresource": subresource}
    if call.scope != "cluster":
        attributes["namespace"] = namespace
    review = client.AuthorizationV1Api(api).create_subject_access_review(
        {
            "spec": {
                "user": ACCOUNT,
                "groups": ["system:serviceaccounts"],
                "resourceAttributes": attributes,
            }
        }
    )
    return bool(review.status.allowed)


def call_verdicts(api: client.ApiClient, calls: tuple[Call, ...]) -> dict[str, bool]:
    """Each call's verb, where it lands ("shop" stands for any watched namespace)."""
    return {
        f"{verb} {call.resource} {call.name}": allowed(
            api, call, verb, NS if call.scope == "release" else "shop"
        )
        for call in calls
        for verb in call.verbs
    }


def operator_env(api: client.ApiClient, tls: Path, ca: CertificateAuthority) -> dict[str, str]:
    """The installed Deployment's environment, for a local process: the ports free local
    ones, the mounted files test files, the fieldRefs resolved."""
    deployment = client.AppsV1Api(api).read_namespaced_deployment(f"{FULL}-operator", NS)
    (container,) = deployment.spec.template.spec.containers
    env = {e.name: e.value for e in container.env if e.value is not None}
    for own in ("KUBERESOLVER_METRICS_PORT", "KUBERESOLVER_READY_PORT"):
        del env[own]  # OperatorProcess serves its own
    serving = ca.issue("xds", "xds", ip_addresses=("127.0.0.1",), server=True)
    tls.mkdir(exist_ok=True)
    for name, source in (("tls.crt", serving.cert), ("tls.key", serving.key),
                         ("ca.crt", ca.cert_path)):  # fmt: skip
        (tls / name).write_bytes(source.read_bytes())
    for name, value in list(env.items()):
        if value.startswith("/etc/kuberesolver/xds/"):
            env[name] = str(tls / value.rsplit("/", 1)[1])
    env["KUBERESOLVER_LEASE_NAMESPACE"] = NS
    if "KUBERESOLVER_WEBHOOK_PORT" in env:
        env |= {"KUBERESOLVER_WEBHOOK_PORT": str(free_port()),
                "KUBERESOLVER_WEBHOOK_ADDR": "127.0.0.1"}  # fmt: skip
    if "KUBERESOLVER_XDS_ADDRESS" in env:
        env["KUBERESOLVER_XDS_ADDRESS"] = f"127.0.0.1:{free_port()}"
    return env


@pytest.fixture(scope="module")
def everything_on(user: UserShell, fresh_admin: client.ApiClient) -> str:
    user.run(f"{INSTALL} {EVERYTHING}")
    return INSTALL


def test_every_feature_runs_under_the_charts_rbac(
    everything_on: str,
    shop: str,
    fresh_control_plane: ControlPlane,
    fresh_admin: client.ApiClient,
    tmp_path: Path,
) -> None:
    core = client.CoreV1Api(fresh_admin)
    token = until(lambda: service_account_token(fresh_admin, NS, f"{FULL}-operator"),
                  timeout_s=30, message="the release's ServiceAccount token")  # fmt: skip
    kubeconfig = fresh_control_plane.token_kubeconfig("operator", token, namespace=NS)
    env = operator_env(fresh_admin, tmp_path / "xds", CertificateAuthority(tmp_path))
    assert env["KUBERESOLVER_XDS_POD_READINESS"] == "true"
    assert env["KUBERESOLVER_XDS_AUTH"] == "token"
    with OperatorProcess(kubeconfig, env=env, name="chart-live") as op:
        publish_target(fresh_admin, "cart")

        def certificate_issued() -> bool:  # create/get Secret, get/patch the configuration
            core.read_namespaced_secret(env["KUBERESOLVER_WEBHOOK_SECRET"], NS)
            config = client.AdmissionregistrationV1Api(
                fresh_admin
            ).read_mutating_webhook_configuration(env["KUBERESOLVER_WEBHOOK_CONFIGURATION"])
            return all(hook.client_config.ca_bundle for hook in config.webhooks)

        until(certificate_issued, timeout_s=60, message="the webhook's Secret and caBundle")
        assert token_reviewed(fresh_admin, kubeconfig)  # as the xDS server makes them
        op.stop()
        refused = [ln for ln in op.log_text().splitlines()
                   if "Forbidden" in ln or " 403" in ln or "forbidden" in ln]  # fmt: skip
        assert not refused, "\n".join(refused)
    verdicts = call_verdicts(fresh_admin, CORE + WEBHOOK_SELF_TLS + XDS_PODS + XDS_TOKEN_AUTH)
    assert all(verdicts.values()), verdicts


def publish_target(admin: client.ApiClient, name: str) -> None:
    """Create the GrpcTarget ``name`` of Service cart in shop, and wait until the operator has
    published it (get Service, list slices, get/create ConfigMap, patch status)."""
    apply_object(admin, {
        "apiVersion": "kuberesolver.io/v1alpha1", "kind": "GrpcTarget",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {"service": "cart", "port": "grpc"},
    })  # fmt: skip

    def published() -> bool:
        cm = client.CoreV1Api(admin).read_namespaced_config_map(name, "shop")
        target = client.CustomObjectsApi(admin).get_namespaced_custom_object(
            "kuberesolver.io", "v1alpha1", "shop", "grpctargets", name
        )
        return pod_ip(71) in (cm.data or {}).get("endpoints.json", "") and bool(
            target.get("status", {}).get("observedGeneration")
        )

    until(published, timeout_s=60, message=f"the {name} ConfigMap and status")


@pytest.fixture(scope="module")
def shop(everything_on: str, fresh_admin: client.ApiClient) -> str:
    """Namespace shop with Service cart and its one ready Pod (made once for the module)."""
    core = client.CoreV1Api(fresh_admin)
    core.create_namespace({"metadata": {"name": "shop"}})
    core.create_namespaced_service("shop", {
        "metadata": {"name": "cart"},
        "spec": {"selector": {"app": "cart"},
                 "ports": [{"name": "grpc", "port": 50051, "targetPort": "grpc"}]},
    })  # fmt: skip
    run_pod(fresh_admin, "shop", "cart-1", pod_ip(71), {"app": "cart"})
    return "shop"


@pytest.mark.parametrize("feature", list(ALONE))
@pytest.mark.parametrize("mode", list(MODES))
def test_each_feature_alone_runs_under_its_rbac(
    shop: str,
    mode: str,
    feature: str,
    user: UserShell,
    fresh_control_plane: ControlPlane,
    fresh_admin: client.ApiClient,
    tmp_path: Path,
) -> None:
    values = {**ALONE[feature], "watchNamespaces": MODES[mode]}
    user.run(f"{UPGRADE} --reset-values {helm_args(values)}")
    mine = feature_calls(values)
    verdicts = call_verdicts(fresh_admin, EVERY_CALL)
    wanted = {f"{v} {c.resource} {c.name}" for c in mine for v in c.verbs}
    assert {k for k, ok in verdicts.items() if ok} == wanted, verdicts

    token = service_account_token(fresh_admin, NS, f"{FULL}-operator")
    kubeconfig = fresh_control_plane.token_kubeconfig(f"op-{mode}-{feature}", token, namespace=NS)
    env = operator_env(fresh_admin, tmp_path / "xds", CertificateAuthority(tmp_path))
    assert env.get("KUBERESOLVER_WATCH_NAMESPACES", "") == ",".join(MODES[mode])
    audit = AuditLog(fresh_control_plane.audit_log)
    audit.mark()
    name = f"{mode}-{feature}"
    with OperatorProcess(kubeconfig, env=env, name=f"chart-{name}") as op:
        publish_target(fresh_admin, name)
        if feature == "webhook":  # get/update Secret, get/patch the configuration
            until(lambda: webhook_tls_kept(audit, fresh_admin, env), timeout_s=60,
                  message="the webhook's Secret and caBundle")  # fmt: skip
        if feature == "xds-pods":
            until(lambda: any(c.resource == "pods" and c.verb == "watch"
                              for c in audit.calls(ACCOUNT)),
                  timeout_s=60, message="the Pod watch")  # fmt: skip
        if feature == "xds-token-auth":
            assert token_reviewed(fresh_admin, kubeconfig)
        op.stop()
        log = op.log_text()
    refused = [str(c) for c in audit.calls(ACCOUNT) if c.code == 403]
    assert refused == [], "refused calls:\n" + "\n".join(refused)
    assert not [ln for ln in log.splitlines() if "forbidden" in ln.lower() or " 403" in ln]
    if MODES[mode]:
        wide = [str(c) for c in audit.calls(ACCOUNT)
                if not c.namespace and c.resource in NAMESPACED]  # fmt: skip
        assert wide == [], "cluster-wide calls in namespaced mode:\n" + "\n".join(wide)


def webhook_tls_kept(audit: AuditLog, admin: client.ApiClient, env: dict[str, str]) -> bool:
    """Whether the operator has read its TLS Secret and the webhook configuration, and the
    configuration has its caBundle (patched now or by an earlier run)."""
    calls = {(c.verb, c.resource, c.name) for c in audit.calls(ACCOUNT) if c.code < 300}
    configuration = env["KUBERESOLVER_WEBHOOK_CONFIGURATION"]
    if not {("get", "secrets", env["KUBERESOLVER_WEBHOOK_SECRET"]),
            ("get", "mutatingwebhookconfigurations", configuration)} <= calls:  # fmt: skip
        return False
    config = client.AdmissionregistrationV1Api(admin).read_mutating_webhook_configuration(
        configuration
    )
    return all(hook.client_config.ca_bundle for hook in config.webhooks)


def token_reviewed(admin: client.ApiClient, kubeconfig: Path) -> bool:
    """A TokenReview and a SubjectAccessReview as the xDS server makes them, as the operator."""
    core = client.CoreV1Api(admin)
    with contextlib.suppress(client.ApiException):  # made by the first run
        core.create_namespaced_service_account("shop", {"metadata": {"name": "reader"}})
    reader = core.create_namespaced_service_account_token(
        "reader", "shop",
        {"spec": {"audiences": ["xds.kuberesolver.io"], "expirationSeconds": 600}},
    ).status.token  # fmt: skip
    operator_api = api_client(kubeconfig)
    try:
        authorizer = KubeAuthorizer(operator_api, {("shop", "cart"): "cart"}.get)
        refused = asyncio.run(authorizer.allowed(reader, ("shop", "cart"))) is False
        return refused and authorizer.reviews == 1  # reviewed (no Role lets reader get it)
    finally:
        operator_api.close()


def test_features_turned_off_take_their_grants_away(
    everything_on: str, user: UserShell, fresh_admin: client.ApiClient
) -> None:
    user.run(f"{UPGRADE} --reuse-values --set xds.enabled=false --set webhook.enabled=false")
    assert all(call_verdicts(fresh_admin, CORE).values())
    verdicts = call_verdicts(fresh_admin, WEBHOOK_SELF_TLS + XDS_PODS + XDS_TOKEN_AUTH)
    assert not any(verdicts.values()), verdicts
    names = user.run(f"kubectl get clusterroles,roles -n {NS} -o name").stdout.split()
    assert not [n for n in names if n.endswith(("-webhook-tls", "-xds-pods", "-xds-auth"))], names


def test_a_second_release_coexists_and_uninstall_keeps_the_crd(
    everything_on: str, user: UserShell, fresh_admin: client.ApiClient
) -> None:
    user.run(
        "helm install second charts/kuberesolver -n tenant --create-namespace"
        " --set fullnameOverride=second --set crds.install=false"
        " --set 'watchNamespaces={tenant}'"
    )
    for release, ns in (("kuberesolver", NS), ("second", "tenant")):
        status = user.run(f"helm status {release} -n {ns}").stdout
        assert "STATUS: deployed" in status, status
    roles = client.RbacAuthorizationV1Api(fresh_admin).list_namespaced_role("tenant").items
    assert {r.metadata.name for r in roles} >= {"second-operator", "second-operator-leader"}
    target = apply_object(fresh_admin, {
        "apiVersion": "kuberesolver.io/v1alpha1", "kind": "GrpcTarget",
        "metadata": {"name": "kept", "namespace": "tenant"}, "spec": {"service": "kept"},
    })  # fmt: skip
    assert target == "GrpcTarget/kept"
    custom = client.CustomObjectsApi(fresh_admin)
    uid = custom.get_namespaced_custom_object(
        "kuberesolver.io", "v1alpha1", "tenant", "grpctargets", "kept"
    )["metadata"]["uid"]
    core = client.CoreV1Api(fresh_admin)
    core.create_namespaced_config_map("tenant", {"metadata": {"name": "kept", "ownerReferences": [
        {"apiVersion": "kuberesolver.io/v1alpha1", "kind": "GrpcTarget", "name": "kept",
         "uid": uid, "controller": True}]}})  # fmt: skip

    user.run("helm uninstall second -n tenant --wait")
    user.run(f"helm uninstall kuberesolver -n {NS} --wait")
    crd = client.ApiextensionsV1Api(fresh_admin).read_custom_resource_definition(
        "grpctargets.kuberesolver.io"
    )
    assert crd.metadata.deletion_timestamp is None
    custom.get_namespaced_custom_object(
        "kuberesolver.io", "v1alpha1", "tenant", "grpctargets", "kept"
    )
    core.read_namespaced_config_map("kept", "tenant")
    rbac = client.RbacAuthorizationV1Api(fresh_admin)
    left: list[Any] = rbac.list_cluster_role(
        label_selector="app.kubernetes.io/part-of=kuberesolver"
    ).items
    assert not left, [r.metadata.name for r in left]
