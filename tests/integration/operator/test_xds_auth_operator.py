"""Who sees a target over the operator's xDS, on the real apiserver.

A real operator (manifests/rbac.yaml) serves xDS over TLS with ``KUBERESOLVER_XDS_AUTH=token``.
Real grpcio ``xds://`` clients present ServiceAccount tokens as gRFC A97 call credentials
(``call_creds: jwt_token_file`` in the bootstrap, ``GRPC_EXPERIMENTAL_XDS_BOOTSTRAP_CALL_CREDS``).
A ServiceAccount allowed to ``get`` the target's ConfigMap reaches the backend (from grpcio
and from grpc-go); one without
a RoleBinding, a token of another audience, an expired token, one from another namespace
and a client whose grpc does not send its token see the target as absent.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from kubernetes import client

from kuberesolver.operator.xds.auth import KubeAuthorizer
from kuberesolver.xds.auth import DEFAULT_AUDIENCE
from kuberesolver.xds.bootstrap import ENV_CALL_CREDS
from testenv import ControlPlane
from testenv.controlplane import free_port
from testenv.grpc_go import xds_client
from testenv.kube import api_client, create_namespace
from testenv.netns import pod_ip
from testenv.operator_process import OperatorProcess
from testenv.pki import CertificateAuthority
from testenv.wait import until
from tests.client._support import Backend
from tests.integration.operator.helpers import (
    create_target,
    ep,
    make_slice,
    metric_sum_labelled,
    selectorless_service,
)
from tests.integration.test_xds_auth import CONFIGMAP, may_read_configmap, service_account, token
from tests.xds.conftest import AUTHORITY, Client, write_bootstrap

pytestmark = pytest.mark.integration


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed_token(
    cp: ControlPlane, api: client.ApiClient, namespace: str, name: str, exp: float
) -> str:
    """A ServiceAccount token like the apiserver's, signed with its key, expiring at ``exp``."""
    account = client.CoreV1Api(api).read_namespaced_service_account(name, namespace)
    now = int(time.time())
    claims = {
        "iss": "https://kubernetes.default.svc.cluster.local",
        "sub": f"system:serviceaccount:{namespace}:{name}",
        "aud": [DEFAULT_AUDIENCE],
        "iat": now - 3600,
        "nbf": now - 3600,
        "exp": int(exp),
        "kubernetes.io": {
            "namespace": namespace,
            "serviceaccount": {"name": name, "uid": account.metadata.uid},
        },
    }
    header = {"alg": "RS256", "typ": "JWT"}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    key = serialization.load_pem_private_key(
        (cp.workdir / "pki" / "sa.key").read_bytes(), password=None
    )
    assert isinstance(key, rsa.RSAPrivateKey)
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64(signature)}"


@pytest.fixture
def clients() -> Iterator[list[Client]]:
    started: list[Client] = []
    yield started
    for c in started:
        c.close()


def test_only_a_service_account_that_may_read_the_configmap_sees_the_target(
    control_plane: ControlPlane,
    admin_api: client.ApiClient,
    namespace: str,
    operator_factory: Callable[..., OperatorProcess],
    clients: list[Client],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ca = CertificateAuthority(tmp_path)
    serving = ca.issue("xds", "xds", ip_addresses=("127.0.0.1",), server=True)
    port = free_port()
    op = operator_factory(
        {
            "KUBERESOLVER_XDS_ADDRESS": f"127.0.0.1:{port}",
            "KUBERESOLVER_XDS_AUTHORITY": AUTHORITY,
            "KUBERESOLVER_XDS_AUTH": "token",
            "KUBERESOLVER_XDS_CERT_FILE": str(serving.cert),
            "KUBERESOLVER_XDS_KEY_FILE": str(serving.key),
        },
        name="auth",
    )
    backend = Backend(pod_ip(201), "b1", port=50051)
    other = create_namespace(admin_api, f"t-{uuid.uuid4().hex[:10]}")
    try:
        selectorless_service(admin_api, namespace, "svc")
        make_slice(admin_api, namespace, "svc", "svc-1", [ep(pod_ip(201), ready=True)])
        create_target(admin_api, namespace, "t", {"service": "svc", "configMapName": CONFIGMAP})
        for account in ("reader", "stranger"):
            service_account(admin_api, namespace, account)
        may_read_configmap(admin_api, namespace, "reader")
        service_account(admin_api, other, "reader")
        may_read_configmap(admin_api, other, "reader")  # in its own namespace only
        tokens: dict[str, str] = {
            "reader": token(admin_api, namespace, "reader", DEFAULT_AUDIENCE),
            "stranger": token(admin_api, namespace, "stranger", DEFAULT_AUDIENCE),
            "wrong-audience": token(admin_api, namespace, "reader", "someone-else"),
            "other-namespace": token(admin_api, other, "reader", DEFAULT_AUDIENCE),
            "expired": signed_token(
                control_plane, admin_api, namespace, "reader", time.time() - 60
            ),
            "signed-like-expired": signed_token(
                control_plane, admin_api, namespace, "reader", time.time() + 600
            ),
            "not-sent": token(admin_api, namespace, "reader", DEFAULT_AUDIENCE),
            "reader-in-go": token(admin_api, namespace, "reader", DEFAULT_AUDIENCE),
        }
        target = f"xds://{AUTHORITY}/t.{namespace}"

        def start(who: str) -> Client:
            token_file = tmp_path / f"{who}.token"
            token_file.write_text(tokens[who])
            bootstrap = write_bootstrap(
                tmp_path / f"{who}.json", f"127.0.0.1:{port}", "--ca-file", str(ca.cert_path),
                "--token-file", str(token_file), "--node-id", who,
            )  # fmt: skip
            if (
                who == "not-sent"
            ):  # a grpc without A97 switched on: the bootstrap's call_creds unread
                monkeypatch.delenv(ENV_CALL_CREDS, raising=False)
            else:
                monkeypatch.setenv(ENV_CALL_CREDS, "true")
            command = (str(xds_client()),) if who.endswith("-in-go") else ()
            c = Client(bootstrap, [target], command)
            clients.append(c)
            return c

        allowed = {who: start(who) for who in ("reader", "signed-like-expired", "reader-in-go")}
        for who, c in allowed.items():
            until(
                lambda c=c: c.calls(5)["counts"] == {"b1": 5},
                timeout_s=60,
                message=f"{who} reaches b1",
            )
        for who in ("stranger", "wrong-audience", "other-namespace", "expired", "not-sent"):
            got = start(who).calls(1)
            assert got["counts"] == {}, (who, got)
            assert got["errors"], (who, got)
            assert f"(node '{who}') may not see {namespace}/t" in op.log_text(), who
        assert backend.calls >= 15  # the allowed ones only
        # Each refusal counted by why: no RBAC rule, a token the TokenReview refuses, none.
        denials = "kuberesolver_operator_xds_denials_total"
        for reason in ("forbidden", "token_refused", "no_token"):
            assert metric_sum_labelled(op, denials, reason=reason) >= 1, reason
        assert metric_sum_labelled(op, denials, reason="api_error") == 0
    finally:
        backend.stop()
        client.CoreV1Api(admin_api).delete_namespace(other, propagation_policy="Background")


async def test_the_authorizer_reviews_as_the_operator_and_caches_who_a_token_is(
    admin_api: client.ApiClient, namespace: str, operator_kubeconfig: Path
) -> None:
    """KubeAuthorizer with the operator's own ServiceAccount (manifests/rbac.yaml): a yes
    for the ConfigMap the reader may get, a no for another and for a target not served;
    one TokenReview per token, whatever the number of targets."""
    service_account(admin_api, namespace, "reader")
    service_account(admin_api, namespace, "stranger")
    may_read_configmap(admin_api, namespace, "reader")
    configmaps = {(namespace, "t"): CONFIGMAP, (namespace, "u"): "another-configmap"}
    api = api_client(operator_kubeconfig)
    try:
        auth = KubeAuthorizer(api, configmaps.get)
        reader = token(admin_api, namespace, "reader", DEFAULT_AUDIENCE)
        assert await auth.allowed(reader, (namespace, "t")) is True
        assert await auth.allowed(reader, (namespace, "u")) is False
        assert await auth.allowed(reader, (namespace, "not-served")) is False
        assert await auth.allowed(reader, (namespace, "t")) is True
        assert auth.reviews == 1
        stranger = token(admin_api, namespace, "stranger", DEFAULT_AUDIENCE)
        assert await auth.allowed(stranger, (namespace, "t")) is False
        assert await auth.allowed("", (namespace, "t")) is False
        assert auth.reviews == 2
    finally:
        api.close()
