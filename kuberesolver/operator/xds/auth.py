"""Who may see a target over xDS: a ServiceAccount token, reviewed by the apiserver.

The ADS server (:class:`~kuberesolver.xds.ads_aio.AdsServer`) asks
:meth:`KubeAuthorizer.allowed` for each target a stream subscribes to. The
token (the client's projected ServiceAccount token, our audience) goes to a
TokenReview; the identity it names goes to a SubjectAccessReview: may it
``get`` the target's ConfigMap? So the RBAC that guards the mounted file
guards the stream. Decisions are cached (:class:`~kuberesolver.xds.auth.DecisionCache`:
30 s for a yes, 5 s for a no, never past the token's expiry), and so is who a
token belongs to (5 minutes, never past its expiry): a recheck of an open
stream costs one SubjectAccessReview, not a TokenReview too. The bodies and
their answers are the pure parts in :mod:`kuberesolver.xds.auth`;
the API calls run on a thread. An API failure is not cached: the server
counts it as a no and asks again at its next recheck.

The operator's ServiceAccount needs ``create`` on ``tokenreviews`` and
``subjectaccessreviews`` (manifests/rbac.yaml), as ``system:auth-delegator`` grants.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Final

from kubernetes import client

from kuberesolver.operator.runtime.hub import TargetKey
from kuberesolver.xds.auth import (
    DEFAULT_AUDIENCE,
    Decision,
    DecisionCache,
    Identity,
    access_allowed,
    access_review,
    reviewed_identity,
    token_expiry,
    token_review,
)

__all__ = ["KubeAuthorizer"]

_log = logging.getLogger("kuberesolver.operator.xds")

_IDENTITY_TTL_S: Final = 300.0
_MAX_IDENTITIES: Final = 10_000


class KubeAuthorizer:
    """TokenReview, then SubjectAccessReview on the target's ConfigMap; cached."""

    def __init__(
        self,
        api: client.ApiClient,
        configmap: Callable[[TargetKey], str | None],
        audience: str = DEFAULT_AUDIENCE,
        cache: DecisionCache | None = None,
        on_denied: Callable[[str], None] | None = None,
    ) -> None:
        self._api: Any = api  # the typed API classes want model objects; ours are dicts
        self._authn: Any = client.AuthenticationV1Api(api)
        self._authz: Any = client.AuthorizationV1Api(api)
        self._configmap = configmap
        self.audience = audience
        self.cache = cache if cache is not None else DecisionCache()
        self._on_denied = on_denied or (lambda _reason: None)
        """Told of every refusal, with its kind (``kuberesolver_operator_xds_denials_total``)."""
        self.reviews = 0
        """TokenReviews sent (for tests: the cache saves them)."""
        self._identities: OrderedDict[bytes, tuple[float, Identity]] = OrderedDict()
        self._lock = threading.Lock()

    async def allowed(self, token: str, key: TargetKey) -> bool:
        namespace = key[0]
        configmap = self._configmap(key)
        if not token or configmap is None:  # no token, or a target this replica does not serve
            self._on_denied("no_token" if not token else "unknown_target")
            return False
        cached = self.cache.get(token, namespace, configmap)
        if cached is None:
            try:
                cached = await asyncio.to_thread(self._decide, token, namespace, configmap)
            except Exception:  # the server counts it as a no, and asks again
                self._on_denied("api_error")
                raise
            self.cache.put(token, namespace, configmap, cached)
            if not cached.allowed:
                _log.info("xDS: %s/%s refused: %s", namespace, key[1], cached.reason)
        if not cached.allowed:
            self._on_denied(cached.kind or "forbidden")
        return cached.allowed

    def _identity(self, token: str) -> Identity:
        """Who ``token`` belongs to (cached); ``PermissionError`` saying why no one."""
        digest = hashlib.sha256(token.encode()).digest()
        now = time.time()
        with self._lock:
            found = self._identities.get(digest)
            if found is not None and found[0] > now:
                return found[1]
        self.reviews += 1
        review: dict[str, Any] = self._api.sanitize_for_serialization(
            self._authn.create_token_review(token_review(token, self.audience))
        )
        identity = reviewed_identity(review, self.audience)
        expires = min(now + _IDENTITY_TTL_S, token_expiry(token) or float("inf"))
        with self._lock:
            self._identities[digest] = (expires, identity)
            self._identities.move_to_end(digest)
            while len(self._identities) > _MAX_IDENTITIES:
                self._identities.popitem(last=False)
        return identity

    def _decide(self, token: str, namespace: str, configmap: str) -> Decision:
        try:
            identity = self._identity(token)
        except PermissionError as exc:
            return Decision(False, str(exc), "token_refused")
        answer: dict[str, Any] = self._api.sanitize_for_serialization(
            self._authz.create_subject_access_review(access_review(identity, namespace, configmap))
        )
        allowed, reason = access_allowed(answer)
        return Decision(allowed, reason, "" if allowed else "forbidden")
