"""The mounts webhook's pure parts: which mounts a Pod gets, and how they are added.

The annotation is tenant text: Hypothesis throws arbitrary strings at it and
checks that only DNS-1123 subdomains, at most 32 of them, ever get through,
and that a refusal is one short, ASCII warning.
"""

from __future__ import annotations

import copy
import string
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from kuberesolver.core.names import is_dns1123_label, is_dns1123_subdomain
from kuberesolver.operator.webhook.admission import (
    MAX_TARGETS,
    Mount,
    conflicts,
    inject,
    parse_targets,
    plan_mounts,
    volume_name,
)
from kuberesolver.operator.webhook.xds_inject import wants_xds

GREETER = {"spec": {"service": "greeter"}}
INVENTORY = {"spec": {"service": "stock", "serviceNamespace": "shop", "configMapName": "inv"}}


def test_parse_targets_trims_and_keeps_order_once() -> None:
    assert parse_targets(" greeter, inventory,,greeter ") == (["greeter", "inventory"], [])
    assert parse_targets("") == ([], [])
    assert parse_targets("a.b-c") == (["a.b-c"], [])


HOSTILE = [
    "otherns/secret",
    "../../otherns/grpctargets/secret",
    "otherns%2Fsecret",
    "..%2F..%2Fotherns%2Fgrpctargets%2Fsecret",
    "greeter/status",
    "greeter%2Fstatus",
    "gree\nter",
    "Greeter",
    "greeter.",
    "-greeter",
    "a" * 254,
    "..",
    "gre eter",
]


def test_names_that_are_no_object_name_are_refused_before_any_lookup() -> None:
    for bad in HOSTILE:
        names, warnings = parse_targets(f"greeter,{bad}")
        assert names == [], bad
        assert len(warnings) == 1, bad
        assert "is not a GrpcTarget name" in warnings[0]
        assert "the Pod is left unchanged" in warnings[0]


def test_more_than_32_names_get_one_warning_and_no_lookup() -> None:
    exactly = ",".join(f"t{i}" for i in range(MAX_TARGETS))
    assert parse_targets(exactly) == ([f"t{i}" for i in range(MAX_TARGETS)], [])
    assert parse_targets(exactly + ",t99") == (
        [],
        [
            "kuberesolver.io/targets lists 33 names, more than the 32 GrpcTargets allowed; "
            "the Pod is left unchanged"
        ],
    )
    huge = ",".join(f"t{i}" for i in range(36_000))
    assert parse_targets(huge) == (
        [],
        [
            f"kuberesolver.io/targets is {len(huge)} characters long (36000 entries), more "
            "than 32 GrpcTarget names need; the Pod is left unchanged"
        ],
    )
    # duplicates count once
    assert parse_targets(",".join(["t"] * 2000)) == (["t"], [])


NAME_CHARS = string.ascii_lowercase + string.digits + "-."


@given(st.text(alphabet=NAME_CHARS + ",/% \n\t%A_:\x00\u00e9", max_size=400))
def test_whatever_the_annotation_only_short_valid_name_lists_pass(annotation: str) -> None:
    names, warnings = parse_targets(annotation)
    if warnings:
        assert names == []
        assert len(warnings) == 1
        assert warnings[0].isascii()
        assert warnings[0].isprintable()
        assert len(warnings[0]) < 400
    else:
        assert len(names) <= MAX_TARGETS
        assert len(set(names)) == len(names)
        assert all(is_dns1123_subdomain(n) and "/" not in n for n in names)


@given(st.text(max_size=300))
def test_any_text_at_all_is_refused_or_a_valid_name(annotation: str) -> None:
    names, warnings = parse_targets(annotation)
    assert all(is_dns1123_subdomain(n) for n in names)
    assert all(w.isascii() and w.isprintable() for w in warnings)


subdomains = st.from_regex(
    r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?(\.[a-z0-9]{1,8}){0,8}", fullmatch=True
)


@given(st.lists(subdomains, min_size=1, max_size=MAX_TARGETS, unique=True))
def test_every_valid_list_plans_unique_label_volumes(names: list[str]) -> None:
    targets = {n: {"spec": {"service": f"s{i}"}} for i, n in enumerate(names)}
    mounts, warnings = plan_mounts("app", names, targets)
    assert warnings == []
    assert len({m.volume for m in mounts}) == len(names)
    assert all(is_dns1123_label(m.volume) for m in mounts)
    assert len({m.path for m in mounts}) == len(names)


@given(st.text(max_size=200))
def test_a_bad_xds_value_is_one_short_ascii_warning(value: str) -> None:
    wanted, warnings = wants_xds({"kuberesolver.io/xds": value})
    assert wanted == (value.strip().lower() == "true")
    assert all(w.isascii() and len(w) < 200 for w in warnings)


def test_volume_names_are_labels_and_keep_the_simple_form() -> None:
    assert volume_name("greeter") == "kuberesolver-greeter"
    dotted = volume_name("greeter.v2")
    assert is_dns1123_label(dotted)
    assert dotted.startswith("kuberesolver-greeter-v2-")
    long_a, long_b = volume_name("a" * 100 + "x"), volume_name("a" * 100 + "y")
    assert long_a != long_b
    assert is_dns1123_label(long_a)
    assert is_dns1123_label(long_b)


def test_two_targets_of_one_service_are_refused_not_mounted_twice() -> None:
    mounts, warnings = plan_mounts("app", ["a", "b"], {"a": GREETER, "b": GREETER})
    assert mounts == []
    assert "both publish Service greeter.app" in warnings[0]


def test_a_target_whose_spec_would_make_a_bad_path_is_refused() -> None:
    odd = {"spec": {"service": "../etc"}}
    mounts, warnings = plan_mounts("app", ["odd"], {"odd": odd})
    assert mounts == []
    assert "no usable spec.service" in warnings[0]


def test_the_pods_own_volume_or_path_in_the_way_is_a_conflict() -> None:
    mount = Mount("kuberesolver-greeter", "greeter", "/var/run/kuberesolver/greeter.app")
    theirs = _pod()
    theirs["spec"]["volumes"].append({"name": "kuberesolver-greeter", "emptyDir": {}})
    assert "already has a volume" in conflicts(theirs, [mount])[0]
    busy = _pod()
    busy["spec"]["containers"][1]["volumeMounts"].append({"name": "v", "mountPath": mount.path})
    assert "already mounts something" in conflicts(busy, [mount])[0]
    ours = _pod()
    inject(ours, [mount])
    assert conflicts(ours, [mount]) == []


def test_plan_names_volume_configmap_and_path_per_target() -> None:
    mounts, warnings = plan_mounts(
        "app", ["greeter", "inventory"], {"greeter": GREETER, "inventory": INVENTORY}
    )
    assert warnings == []
    assert mounts == [
        Mount(
            "kuberesolver-greeter", "greeter", "/var/run/kuberesolver/greeter.app",
            "greeter", "app", "greeter",
        ),
        Mount(
            "kuberesolver-inventory", "inv", "/var/run/kuberesolver/stock.shop",
            "stock", "shop", "inventory",
        ),
    ]  # fmt: skip


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


def test_inject_never_adds_a_volume_or_path_twice() -> None:
    pod = _pod()
    same = Mount("kuberesolver-greeter", "greeter", "/var/run/kuberesolver/greeter.app")
    inject(pod, [same, same])
    assert [v["name"] for v in pod["spec"]["volumes"]].count("kuberesolver-greeter") == 1
    for c in pod["spec"]["containers"]:
        assert [m["mountPath"] for m in c["volumeMounts"]].count(same.path) == 1


def test_the_mount_root_is_the_clients_default() -> None:
    from kuberesolver.client.settings import DEFAULT_SNAPSHOT_DIR
    from kuberesolver.operator.webhook.admission import MOUNT_ROOT

    assert MOUNT_ROOT == DEFAULT_SNAPSHOT_DIR
