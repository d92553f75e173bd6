"""A skipped injection (pure parts): its reason, whom its Event is about, and the Event budget."""

from __future__ import annotations

import datetime

import pytest

from kuberesolver.operator.runtime.events import build_event
from kuberesolver.operator.webhook.admission import (
    MAX_TARGETS,
    Mount,
    conflicts,
    parse_targets,
    plan_mounts,
)
from kuberesolver.operator.webhook.skips import (
    Problem,
    SkipEvents,
    pod_label,
    reason_of,
    regarding,
)

GREETER = {"spec": {"service": "greeter"}}


def test_a_problem_is_the_warning_text_and_carries_its_reason() -> None:
    problem = Problem("no GrpcTarget", "unknown_target")
    assert problem == "no GrpcTarget"
    assert isinstance(problem, str)
    assert reason_of(problem) == "unknown_target"
    assert reason_of("a plain warning") == "other"


@pytest.mark.parametrize(
    ("annotation", "reason"),
    [
        ("otherns/secret", "bad_annotation"),
        (",".join(f"t{i}" for i in range(MAX_TARGETS + 1)), "too_many_names"),
        ("x" * 20_000, "too_many_names"),
    ],
)
def test_parse_targets_says_why(annotation: str, reason: str) -> None:
    _names, (problem,) = parse_targets(annotation)
    assert reason_of(problem) == reason


def test_plan_mounts_and_conflicts_say_why() -> None:
    _, (unknown,) = plan_mounts("app", ["nope"], {"nope": None})
    assert reason_of(unknown) == "unknown_target"
    _, (unusable,) = plan_mounts("app", ["odd"], {"odd": {"spec": {"service": "Bad_Name"}}})
    assert reason_of(unusable) == "unusable_target"
    _, (twice,) = plan_mounts("app", ["a", "b"], {"a": GREETER, "b": GREETER})
    assert reason_of(twice) == "conflict"
    pod = {"spec": {"volumes": [{"name": "kuberesolver-a", "emptyDir": {}}], "containers": []}}
    (taken,) = conflicts(pod, [Mount("kuberesolver-a", "a", "/var/run/kuberesolver/a.app")])
    assert reason_of(taken) == "conflict"


def test_the_event_is_about_the_controller_then_the_pod_then_the_namespace() -> None:
    owners = [
        {"apiVersion": "v1", "kind": "Node", "name": "n", "uid": "u0"},
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u1",
         "controller": True},
    ]  # fmt: skip
    by_owner = regarding({"metadata": {"generateName": "rs-", "ownerReferences": owners}}, "app")
    assert by_owner == {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": "rs", "namespace": "app", "uid": "u1"},
    }
    first_owner = regarding({"metadata": {"ownerReferences": owners[:1]}}, "app")
    assert first_owner["kind"] == "Node"
    by_name = regarding({"metadata": {"name": "p"}}, "app")
    assert (by_name["kind"], by_name["metadata"]) == ("Pod", {"name": "p", "namespace": "app"})
    by_namespace = regarding({"metadata": {"generateName": "p-"}}, "app")
    assert (by_namespace["kind"], by_namespace["metadata"]["name"]) == ("Namespace", "app")
    assert pod_label({"metadata": {"generateName": "p-"}}) == "p-*"
    assert pod_label({"metadata": {"name": "p"}}) == "p"


def test_an_event_without_a_uid_names_its_object_only() -> None:
    about = regarding({"metadata": {"name": "p"}}, "app")
    event = build_event(
        about, "Warning", "InjectionSkipped", "m", instance="i", now=_now(), count=3
    )
    assert event["involvedObject"] == {
        "apiVersion": "v1", "kind": "Pod", "name": "p", "namespace": "app",
    }  # fmt: skip
    assert event["metadata"]["namespace"] == "app"
    assert event["count"] == 3


def _now() -> datetime.datetime:
    return datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)


KEY = ("app", "ReplicaSet", "rs", "unknown_target")


def test_the_first_skip_posts_and_repeats_become_one_summary() -> None:
    events = SkipEvents(window_s=60, max_posts=10)
    assert events.offer(KEY, "m1", {"kind": "ReplicaSet"}, now=0) == "post"
    for i in range(99):
        assert events.offer(KEY, f"m{i + 2}", {"kind": "ReplicaSet"}, now=1 + i * 0.1) == "later"
    assert events.due(now=59) == []
    (summary,) = events.due(now=60)
    assert (summary.count, summary.message) == (99, "m100")
    assert events.due(now=120) == []
    assert events.offer(KEY, "again", {}, now=200) == "post"  # a new window


def test_a_single_skip_leaves_no_summary() -> None:
    events = SkipEvents(window_s=60)
    assert events.offer(KEY, "m", {}, now=0) == "post"
    assert events.due(now=61) == []


def test_a_repeat_after_its_window_ended_starts_a_new_one_and_keeps_the_old_count() -> None:
    events = SkipEvents(window_s=60)
    events.offer(KEY, "a", {}, now=0)
    events.offer(KEY, "b", {}, now=10)
    assert events.offer(KEY, "c", {}, now=70) == "post"
    (summary,) = events.due(now=71)
    assert (summary.count, summary.message) == (1, "b")


def test_a_storm_of_distinct_owners_costs_at_most_the_budget() -> None:
    events = SkipEvents(window_s=60, max_posts=5, max_keys=50)
    outcomes = [
        events.offer(("app", "ReplicaSet", f"rs{i}", "unknown_target"), "m", {}, now=i * 0.01)
        for i in range(1000)
    ]
    assert outcomes.count("post") == 5
    assert outcomes.count("later") == 45  # one window per owner, up to max_keys
    assert outcomes.count("drop") == 950
    summaries = events.due(now=61)
    assert len(summaries) == 5  # a new budget window, spent again
    assert events.dropped == 950 + 40
    assert events.due(now=200) == []
