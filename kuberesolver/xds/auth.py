"""Who may see a target's resources: pure parts of the ServiceAccount-token check.

A client presents its projected ServiceAccount token (audience ours) on the
ADS stream. The server then asks the apiserver two questions, built here as
plain request bodies for the host's Kubernetes client:

1. a TokenReview (:func:`token_review`): is the token valid for our audience,
   and whose is it (:func:`reviewed_identity`)?
2. a SubjectAccessReview (:func:`access_review`): may that identity ``get``
   the target's ConfigMap? The RBAC that guards the mounted file guards the
   stream (:func:`access_allowed`).

Answers are kept in a :class:`DecisionCache` for a short time, never past the
token's own expiry (read from its ``exp`` claim, unverified: the apiserver
does the verifying). A client that is not allowed sees the resource as absent.
Standard library only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "DEFAULT_AUDIENCE",
    "Decision",
    "DecisionCache",
    "Identity",
    "access_allowed",
    "access_review",
    "reviewed_identity",
    "token_expiry",
    "token_review",
]

DEFAULT_AUDIENCE: Final = "xds.kuberesolver.io"
"""The audience a client's projected token must carry."""

_SA_PREFIX: Final = "system:serviceaccount:"


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a token belongs to, as the TokenReview said."""

    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: Mapping[str, tuple[str, ...]] | None = None

    @property
    def service_account(self) -> tuple[str, str] | None:
        """``(namespace, name)`` for a ServiceAccount's token, else ``None``."""
        if not self.username.startswith(_SA_PREFIX):
            return None
        namespace, _, name = self.username[len(_SA_PREFIX) :].partition(":")
        return (namespace, name) if namespace and name else None


def token_review(token: str, audience: str = DEFAULT_AUDIENCE) -> dict[str, Any]:
    """The TokenReview body (authentication.k8s.io/v1) for ``token`` and our ``audience``."""
    return {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": token, "audiences": [audience]},
    }


def reviewed_identity(review: Mapping[str, Any], audience: str = DEFAULT_AUDIENCE) -> Identity:
    """The identity a TokenReview answer vouches for; ``PermissionError`` saying why not.

    The answer must say ``authenticated`` and list ``audience`` among the
    token's audiences (the apiserver intersects them with the ones asked for).
    """
    status = review.get("status")
    if not isinstance(status, Mapping):
        raise PermissionError("the TokenReview has no status")
    if status.get("authenticated") is not True:
        error = status.get("error") or "not authenticated"
        raise PermissionError(f"token refused: {error}")
    audiences = status.get("audiences")
    if not isinstance(audiences, list) or audience not in audiences:
        raise PermissionError(f"token is not for audience {audience!r} (it has {audiences!r})")
    user = status.get("user")
    if not isinstance(user, Mapping) or not isinstance(user.get("username"), str):
        raise PermissionError("the TokenReview names no user")
    groups = user.get("groups") or []
    extra = user.get("extra") or {}
    return Identity(
        username=user["username"],
        uid=str(user.get("uid") or ""),
        groups=tuple(str(g) for g in groups) if isinstance(groups, list) else (),
        extra=(
            {str(k): tuple(str(x) for x in v) for k, v in extra.items() if isinstance(v, list)}
            if isinstance(extra, Mapping)
            else None
        ),
    )


def access_review(identity: Identity, namespace: str, configmap: str) -> dict[str, Any]:
    """The SubjectAccessReview body (authorization.k8s.io/v1): may ``identity`` get the
    ConfigMap ``configmap`` in ``namespace``?"""
    spec: dict[str, Any] = {
        "user": identity.username,
        "groups": list(identity.groups),
        "resourceAttributes": {
            "namespace": namespace,
            "verb": "get",
            "group": "",
            "version": "v1",
            "resource": "configmaps",
            "name": configmap,
        },
    }
    if identity.uid:
        spec["uid"] = identity.uid
    if identity.extra:
        spec["extra"] = {k: list(v) for k, v in identity.extra.items()}
    return {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": spec,
    }


def access_allowed(review: Mapping[str, Any]) -> tuple[bool, str]:
    """``(allowed, reason)`` from a SubjectAccessReview answer; anything unclear is a no."""
    status = review.get("status")
    if not isinstance(status, Mapping):
        return False, "the SubjectAccessReview has no status"
    reason = str(status.get("reason") or status.get("evaluationError") or "")
    if status.get("denied") is True:
        return False, reason or "denied"
    if status.get("allowed") is True:
        return True, reason
    return False, reason or "no RBAC rule allows it"


def token_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT (seconds since the epoch), read without verifying it;
    ``None`` when the token is not a JWT or has none."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        return None
    return float(exp)


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str = ""
    kind: str = ""
    """Why not, as a metric label: ``token_refused`` or ``forbidden``."""


class DecisionCache:
    """Decisions by (token, namespace, ConfigMap) for ``ttl_s`` (``denied_ttl_s`` for a no),
    never past the token's expiry; at most ``max_entries``, the oldest used going first.

    Tokens are kept only as SHA-256 digests. ``clock`` is wall time (``exp`` is
    wall time too).
    """

    def __init__(
        self,
        ttl_s: float = 30.0,
        denied_ttl_s: float = 5.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if ttl_s <= 0 or denied_ttl_s <= 0 or max_entries < 1:
            raise ValueError("the TTLs must be above 0 and max_entries at least 1")
        self._ttl = ttl_s
        self._denied_ttl = denied_ttl_s
        self._max = max_entries
        self._clock = clock
        self._entries: OrderedDict[tuple[bytes, str, str], tuple[float, Decision]] = OrderedDict()

    @staticmethod
    def _key(token: str, namespace: str, configmap: str) -> tuple[bytes, str, str]:
        return hashlib.sha256(token.encode()).digest(), namespace, configmap

    def get(self, token: str, namespace: str, configmap: str) -> Decision | None:
        """The cached decision, or ``None`` when there is none or it expired."""
        key = self._key(token, namespace, configmap)
        found = self._entries.get(key)
        if found is None:
            return None
        expires, decision = found
        if self._clock() >= expires:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return decision

    def put(self, token: str, namespace: str, configmap: str, decision: Decision) -> None:
        """Remember ``decision`` (not at all for a token that has already expired)."""
        now = self._clock()
        expires = now + (self._ttl if decision.allowed else self._denied_ttl)
        token_exp = token_expiry(token)
        if token_exp is not None:
            expires = min(expires, token_exp)
        key = self._key(token, namespace, configmap)
        if expires <= now:
            self._entries.pop(key, None)
            return
        self._entries[key] = (expires, decision)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
