"""The mounts webhook's choice of the projector sidecar for a headless Service (pure parts).

A headless Service has no ClusterIP to fall back on while kubelet's copy of
the ConfigMap lags, so its targets get the projector in a native sidecar
writing an ``emptyDir`` at the path the client reads; a ClusterIP Service's
keep the plain ConfigMap mount, exactly as before.
"""

from __future__ import annotations

import copy
import string
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from kuberesolver.core.endpointslices import service_view
from kuberesolver.core.names import is_dns1035_label, is_dns1123_label, is_dns1123_subdomain
from kuberesolver.operator.webhook.admission import (
    MOUNT_ROOT,
    Mount,
    conflicts,
    inject,
    plan_mounts,
)
from kuberesolver.operator.webhook.projector_inject import (
    API_ACCESS_VOLUME,
    SA_DIR,
    ProjectorImage,
    choose_delivery,
    is_headless,
    projector_image,
)

IMAGE = ProjectorImage("registry.example/kuberesolver-projector:0.1.0", "IfNotPresent")
TARGETS = {
    "greeter": {"spec": {"service": "greeter"}},
    "inventory": {"spec": {"service": "stock", "serviceNamespace": "shop", "configMapName": "inv"}},
}
HEADLESS = {("app", "greeter")}


def headless_only(namespace: str, name: str) -> bool | None:
    return (namespace, name) in HEADLESS


def planned(image: ProjectorImage | None = IMAGE) -> tuple[list[Mount], list[str]]:
    mounts, problems = plan_mounts("app", ["greeter", "inventory"], TARGETS)
    assert problems == []
    return choose_delivery(mounts, headless_only, image)


def pod(automount: bool = True) -> dict[str, Any]:
    """A Pod as the webhook gets it: the apiserver's token volume already in its containers."""
    token = {"name": "kube-api-access-x1", "mountPath": SA_DIR, "readOnly": True}
    body: dict[str, Any] = {
        "metadata": {"name": "p", "namespace": "app"},
        "spec": {
            "containers": [
                {"name": "app", "image": "x", "volumeMounts": [token] if automount else []},
                {"name": "side", "image": "y", "volumeMounts": [{"name": "v", "mountPath": "/v"}]},
            ],
            "volumes": [{"name": "v", "emptyDir": {}}],
        },
    }
    if automount:
        body["spec"]["volumes"].append({"name": "kube-api-access-x1", "projected": {"sources": []}})
    return body


def test_a_headless_service_gets_the_projector_and_a_clusterip_one_the_plain_mount() -> None:
    mounts, warnings = planned()
    assert warnings == []
    greeter, inventory = mounts
    assert greeter.projector == IMAGE
    assert inventory.projector is None
    assert inventory == Mount(
        "kuberesolver-inventory", "inv", f"{MOUNT_ROOT}/stock.shop", "stock", "shop", "inventory"
    )


def test_a_service_not_known_to_the_watch_keeps_the_plain_mount() -> None:
    mounts, _problems = plan_mounts("app", ["greeter"], TARGETS)
    chosen, warnings = choose_delivery(mounts, lambda ns, name: None, IMAGE)
    assert chosen == mounts
    assert warnings == []


def test_without_an_image_a_headless_service_keeps_the_mount_with_a_warning_naming_it() -> None:
    mounts, warnings = planned(image=None)
    assert [m.projector for m in mounts] == [None, None]
    assert len(warnings) == 1
    assert "Service greeter.app (GrpcTarget 'greeter') is headless" in warnings[0]
    assert "KUBERESOLVER_PROJECTOR_IMAGE" in warnings[0]
    assert "calls may fail during rollouts" in warnings[0]
    assert warnings[0].isascii()
    assert len(warnings[0]) < 400


def test_headless_means_no_clusterip_in_the_service() -> None:
    def service(cluster_ip: str) -> Any:
        return service_view(
            {"metadata": {"namespace": "app", "name": "s"}, "spec": {"clusterIP": cluster_ip}}
        )

    assert is_headless(service("None")) is True
    assert is_headless(service("10.96.0.12")) is False
    assert is_headless(None) is None


def test_inject_adds_the_native_sidecar_writing_an_emptydir_at_the_clients_path() -> None:
    mounts, _ = planned()
    body = pod()
    inject(body, mounts, "app")
    spec = body["spec"]
    path = f"{MOUNT_ROOT}/greeter.app"
    assert {"name": "kuberesolver-greeter", "emptyDir": {}} in spec["volumes"]
    assert {"name": "kuberesolver-inventory", "configMap": {"name": "inv"}} in spec["volumes"]
    (side,) = spec["initContainers"]
    assert side["name"] == "kuberesolver-greeter"
    assert side["restartPolicy"] == "Always"  # a native sidecar
    assert side["image"] == IMAGE.image
    assert side["imagePullPolicy"] == "IfNotPresent"
    args = ["--namespace=app", "--configmap=greeter", f"--dir={path}"]
    assert side["command"] == ["kuberesolver-projector", *args]
    assert side["startupProbe"]["exec"]["command"] == ["kuberesolver-projector", *args, "--check"]
    assert side["volumeMounts"] == [
        {"name": "kuberesolver-greeter", "mountPath": path},
        {"name": "kube-api-access-x1", "mountPath": SA_DIR, "readOnly": True},
    ]
    security = side["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["runAsNonRoot"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    for container in spec["containers"]:
        ours = [m for m in container["volumeMounts"] if m["mountPath"].startswith(MOUNT_ROOT)]
        assert ours == [
            {"name": "kuberesolver-greeter", "mountPath": path, "readOnly": True},
            {"name": "kuberesolver-inventory", "mountPath": f"{MOUNT_ROOT}/stock.shop",
             "readOnly": True},
        ]  # fmt: skip
    again = copy.deepcopy(body)
    inject(again, mounts, "app")
    assert again == body  # idempotent
    assert conflicts(body, mounts) == []  # a re-invocation finds its own sidecar


def test_without_a_token_in_the_pod_the_sidecar_gets_its_own() -> None:
    mounts, _ = planned()
    body = pod(automount=False)
    inject(body, mounts, "app")
    (token,) = [v for v in body["spec"]["volumes"] if v["name"] == API_ACCESS_VOLUME]
    sources = token["projected"]["sources"]
    assert sources[0]["serviceAccountToken"]["path"] == "token"
    assert sources[1]["configMap"]["name"] == "kube-root-ca.crt"
    assert sources[2]["downwardAPI"]["items"][0]["path"] == "namespace"
    (side,) = body["spec"]["initContainers"]
    assert {"name": API_ACCESS_VOLUME, "mountPath": SA_DIR, "readOnly": True} in side[
        "volumeMounts"
    ]
    for container in body["spec"]["containers"]:  # the app containers get no token
        assert all(m["mountPath"] != SA_DIR for m in container.get("volumeMounts", []))
    again = copy.deepcopy(body)
    inject(again, mounts, "app")
    assert again == body


def test_a_clusterip_only_pod_is_injected_exactly_as_before() -> None:
    mounts, _problems = plan_mounts("app", ["inventory"], TARGETS)
    chosen, _warnings = choose_delivery(mounts, headless_only, IMAGE)
    body = pod()
    inject(body, chosen, "app")
    assert "initContainers" not in body["spec"]
    assert [v["name"] for v in body["spec"]["volumes"]] == [
        "v", "kube-api-access-x1", "kuberesolver-inventory"
    ]  # fmt: skip


def test_a_container_of_the_sidecars_name_is_a_conflict() -> None:
    mounts, _ = planned()
    body = pod()
    body["spec"]["initContainers"] = [{"name": "kuberesolver-greeter", "image": "theirs"}]
    assert conflicts(body, mounts) == [
        "the Pod already has a container 'kuberesolver-greeter'; it is left unchanged"
    ]
    body = pod()
    body["spec"]["volumes"].append({"name": "kuberesolver-greeter", "configMap": {"name": "x"}})
    assert "already has a volume 'kuberesolver-greeter'" in conflicts(body, mounts)[0]


def test_the_projector_image_setting() -> None:
    assert projector_image({}) is None
    assert projector_image({"KUBERESOLVER_PROJECTOR_IMAGE": " "}) is None
    assert projector_image({"KUBERESOLVER_PROJECTOR_IMAGE": "p:1"}) == ProjectorImage(
        "p:1", "IfNotPresent"
    )
    assert projector_image(
        {"KUBERESOLVER_PROJECTOR_IMAGE": "p:1", "KUBERESOLVER_PROJECTOR_IMAGE_PULL_POLICY": "Never"}
    ) == ProjectorImage("p:1", "Never")
    with pytest.raises(ValueError, match="PULL_POLICY='sometimes' is not one of"):
        projector_image({"KUBERESOLVER_PROJECTOR_IMAGE_PULL_POLICY": "sometimes"})


@given(st.text(max_size=80), st.text(max_size=20))
def test_any_image_setting_is_an_image_without_spaces_or_a_clear_error(
    image: str, policy: str
) -> None:
    env = {
        "KUBERESOLVER_PROJECTOR_IMAGE": image,
        "KUBERESOLVER_PROJECTOR_IMAGE_PULL_POLICY": policy,
    }
    try:
        got = projector_image(env)
    except ValueError as exc:
        problem = str(exc)
        got = None
    else:
        problem = "KUBERESOLVER_PROJECTOR_IMAGE"
    assert "KUBERESOLVER_PROJECTOR_IMAGE" in problem
    if got is not None:
        assert got.image
        assert not any(c.isspace() for c in got.image)
        assert got.pull_policy in ("Always", "IfNotPresent", "Never")


SPEC_TEXT = st.one_of(
    st.sampled_from(["", "greeter", "shop", "a-b", "a.b", "Greeter", "a b", "../etc", "x/y", "-x"]),
    st.text(alphabet=string.ascii_letters + string.digits + "-./_ %\n", max_size=70),
)
"""A GrpcTarget field: absent, a good name, or any text at all."""


@given(SPEC_TEXT, SPEC_TEXT, SPEC_TEXT, st.booleans(), st.booleans())
@example("Greeter", "", "", True, True)  # one bad field each, the rest good: never a sidecar
@example("greeter", "a.b", "", True, True)
@example("greeter", "", "x/y", True, True)
@example("greeter", "shop", "greeter.v2", True, True)  # all good: a sidecar
@settings(max_examples=300)
def test_whatever_the_target_spec_a_sidecar_only_ever_gets_checked_arguments(
    service: str, service_namespace: str, configmap: str, headless: bool, with_image: bool
) -> None:
    """GrpcTarget specs are tenant text: a sidecar is planned only for names that passed the
    checks, and each of its arguments is one flag with a checked value."""
    spec = {"service": service, "serviceNamespace": service_namespace, "configMapName": configmap}
    targets = {"odd": {"spec": spec}, "inventory": TARGETS["inventory"]}
    mounts, problems = plan_mounts("app", ["odd", "inventory"], targets)

    def lookup(namespace: str, name: str) -> bool | None:
        return headless and (namespace, name) != ("shop", "stock")

    chosen, warnings = choose_delivery(mounts, lookup, IMAGE if with_image else None)
    assert all(w.isascii() and w.isprintable() and len(w) < 400 for w in [*problems, *warnings])
    body = pod()
    inject(body, chosen, "app")
    sidecars = body["spec"].get("initContainers", [])
    for side in sidecars:
        assert is_dns1123_label(side["name"])
        flags = dict(arg.partition("=")[::2] for arg in side["command"][1:])
        assert list(flags) == ["--namespace", "--configmap", "--dir"]
        assert flags["--namespace"] == "app"
        assert is_dns1123_subdomain(flags["--configmap"])
        directory, _, leaf = flags["--dir"].rpartition("/")
        name, _, namespace = leaf.partition(".")
        assert directory == MOUNT_ROOT
        assert is_dns1035_label(name)
        assert is_dns1123_label(namespace)
    planned_headless = bool(mounts) and headless
    assert len(sidecars) == (1 if planned_headless and with_image else 0)
    assert len(warnings) == (1 if planned_headless and not with_image else 0)
