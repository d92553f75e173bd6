"""The pure parts of the xDS server's token check: review bodies, their answers, the cache."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kuberesolver.xds.auth import (
    Decision,
    DecisionCache,
    Identity,
    access_allowed,
    access_review,
    reviewed_identity,
    token_expiry,
    token_review,
)

AUD = "xds.kuberesolver.io"


def jwt(claims: dict[str, Any]) -> str:
    def part(doc: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256'})}.{part(claims)}.c2ln"


def answer(**status: Any) -> dict[str, Any]:
    return {"kind": "TokenReview", "status": status}


USER = {
    "username": "system:serviceaccount:team-a:client",
    "uid": "u-1",
    "groups": ["system:serviceaccounts", "system:serviceaccounts:team-a"],
    "extra": {"authentication.kubernetes.io/pod-name": ["client-0"]},
}


def test_the_token_review_asks_for_our_audience() -> None:
    assert token_review("tok", AUD) == {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": "tok", "audiences": [AUD]},
    }


def test_an_authenticated_service_account_is_an_identity() -> None:
    who = reviewed_identity(answer(authenticated=True, audiences=[AUD], user=USER), AUD)
    assert who.service_account == ("team-a", "client")
    assert who.groups == ("system:serviceaccounts", "system:serviceaccounts:team-a")
    assert who.extra == {"authentication.kubernetes.io/pod-name": ("client-0",)}
    assert Identity("alice").service_account is None
    assert Identity("system:serviceaccount:only-ns").service_account is None


@pytest.mark.parametrize(
    ("review", "problem"),
    [
        ({}, "no status"),
        (answer(authenticated=False, error="token expired"), "token expired"),
        (answer(authenticated=False), "not authenticated"),
        (answer(authenticated=True, audiences=["other"], user=USER), "not for audience"),
        (answer(authenticated=True, user=USER), "not for audience"),
        (answer(authenticated=True, audiences=[AUD]), "names no user"),
        (answer(authenticated="true", audiences=[AUD], user=USER), "not authenticated"),
    ],
)
def test_anything_less_is_refused(review: dict[str, Any], problem: str) -> None:
    with pytest.raises(PermissionError, match=problem):
        reviewed_identity(review, AUD)


def test_the_access_review_asks_to_get_the_configmap() -> None:
    who = reviewed_identity(answer(authenticated=True, audiences=[AUD], user=USER), AUD)
    assert access_review(who, "team-a", "greeter-endpoints") == {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": "system:serviceaccount:team-a:client",
            "uid": "u-1",
            "groups": ["system:serviceaccounts", "system:serviceaccounts:team-a"],
            "extra": {"authentication.kubernetes.io/pod-name": ["client-0"]},
            "resourceAttributes": {
                "namespace": "team-a",
                "verb": "get",
                "group": "",
                "version": "v1",
                "resource": "configmaps",
                "name": "greeter-endpoints",
            },
        },
    }


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ({"allowed": True, "reason": "RBAC: by RoleBinding"}, (True, "RBAC: by RoleBinding")),
        ({"allowed": False}, (False, "no RBAC rule allows it")),
        ({"allowed": True, "denied": True, "reason": "webhook"}, (False, "webhook")),
        ({"allowed": "yes"}, (False, "no RBAC rule allows it")),
        (None, (False, "the SubjectAccessReview has no status")),
    ],
)  # fmt: skip
def test_only_a_clear_yes_allows(status: Any, expected: tuple[bool, str]) -> None:
    review = {} if status is None else {"status": status}
    assert access_allowed(review) == expected


def test_the_expiry_is_read_from_a_jwt() -> None:
    assert token_expiry(jwt({"exp": 1_700_000_000})) == 1_700_000_000.0
    assert token_expiry(jwt({"aud": AUD})) is None
    assert token_expiry(jwt({"exp": True})) is None
    assert token_expiry("opaque-token") is None
    assert token_expiry("a.!!!.c") is None


@given(st.text())
def test_any_token_text_gives_an_expiry_or_none(token: str) -> None:
    assert token_expiry(token) is None or isinstance(token_expiry(token), float)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_decisions_last_their_ttl_and_no_longer_than_the_token() -> None:
    clock = Clock()
    cache = DecisionCache(ttl_s=30, denied_ttl_s=5, clock=clock)
    yes, no = Decision(True), Decision(False, "no RoleBinding")
    token = jwt({"exp": clock.now + 10})
    cache.put(token, "ns", "cm", yes)
    cache.put("opaque", "ns", "cm", no)
    assert cache.get(token, "ns", "cm") == yes
    assert cache.get(token, "ns", "other") is None
    assert cache.get("opaque", "ns", "cm") == no
    clock.now += 5
    assert cache.get("opaque", "ns", "cm") is None  # a no is kept for less
    assert cache.get(token, "ns", "cm") == yes
    clock.now += 5
    assert cache.get(token, "ns", "cm") is None  # the token expired before the TTL
    cache.put(token, "ns", "cm", yes)  # an expired token is not remembered at all
    assert len(cache) == 0


def test_the_cache_is_bounded_and_keeps_no_token() -> None:
    cache = DecisionCache(max_entries=2, clock=Clock())
    cache.put("t1", "ns", "cm", Decision(True))
    cache.put("t2", "ns", "cm", Decision(True))
    assert cache.get("t1", "ns", "cm") is not None  # t1 used last: t2 goes first
    cache.put("t3", "ns", "cm", Decision(True))
    assert len(cache) == 2
    assert cache.get("t2", "ns", "cm") is None
    assert cache.get("t1", "ns", "cm") is not None
    assert "t1" not in repr(vars(cache))
    with pytest.raises(ValueError, match="TTLs"):
        DecisionCache(ttl_s=0)
