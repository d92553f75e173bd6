"""The mounts webhook's pure parts: which mounts a Pod gets, and how they are added."""

from __future__ import annotations

import copy
from typing import Any

from kuberesolver.operator.webhook.admission import Mount, inject, parse_targets, plan_mounts

GREETER = {"spec": {"service": "greeter"}}
INVENTORY = {"spec": {"service": "stock", "serviceNamespace": "shop", "configMapName": "inv"}}


def test_parse_targets_trims_and_keeps_order_once() -> None:
    assert parse_targets(" greeter, inventory,,greeter ") == ["greeter", "inventory"]
    assert parse_targets("") == []


def test_plan_names_volume_configmap_and_path_per_target() -> None:
    mounts, warnings = plan_mounts(
        "app", ["greeter", "inventory"], {"greeter": GREETER, "inventory": INVENTORY}
    )
    assert warnings == []
    assert mounts == [
        Mount("kuberesolver-greeter", "greeter", "/var/run/kuberesolver/greeter.app"),
        Mount("kuberesolver-inventory", "inv", "/var/run/kuberesolver/stock.shop"),
    ]


def test_an_unknown_target_means_no_mount_at_all_and_a_warning() -> None:
    mounts, warnings = plan_mounts("app", ["greeter", "nope"], {"greeter": GREETER, "nope": None})
    assert mounts == []
    assert len(warnings) == 1
    assert "no GrpcTarget 'nope' in namespace 'app'" in warnings[0]


def _pod() -> dict[str, Any]:
    return {
        "metadata": {"name": "p"},
        "spec": {
            "containers": [
                {"name": "a", "image": "x"},
                {"name": "b", "image": "y", "volumeMounts": [{"name": "v", "mountPath": "/v"}]},
            ],
            "volumes": [{"name": "v", "emptyDir": {}}],
        },
    }


def test_inject_adds_read_only_mounts_without_subpath_and_changes_nothing_else() -> None:
    pod = _pod()
    mounts = [Mount("kuberesolver-greeter", "greeter", "/var/run/kuberesolver/greeter.app")]
    inject(pod, mounts)
    expected = _pod()
    expected["spec"]["volumes"].append(
        {"name": "kuberesolver-greeter", "configMap": {"name": "greeter"}}
    )
    mount = {
        "name": "kuberesolver-greeter",
        "mountPath": "/var/run/kuberesolver/greeter.app",
        "readOnly": True,
    }
    expected["spec"]["containers"][0]["volumeMounts"] = [mount]
    expected["spec"]["containers"][1]["volumeMounts"].append(mount)
    assert pod == expected
    again = copy.deepcopy(pod)
    inject(again, mounts)
    assert again == pod  # idempotent


def test_the_mount_root_is_the_clients_default() -> None:
    from kuberesolver.client.settings import DEFAULT_SNAPSHOT_DIR
    from kuberesolver.operator.webhook.admission import MOUNT_ROOT

    assert MOUNT_ROOT == DEFAULT_SNAPSHOT_DIR
