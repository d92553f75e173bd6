"""The webhook's certificate, kept current in a live ``ssl.SSLContext`` (no restart).

Two modes (``KUBERESOLVER_WEBHOOK_TLS``):

``self`` (the default unless ``KUBERESOLVER_WEBHOOK_CERT_DIR`` is set)
    The operator manages TLS itself (:mod:`.certs`): the Lease leader
    creates and rotates the Secret and patches its CA bundle into the
    MutatingWebhookConfiguration; every replica reads the Secret and serves it.
``files``
    ``tls.crt`` and ``tls.key`` in ``KUBERESOLVER_WEBHOOK_CERT_DIR`` (a Secret
    mounted by the Deployment, e.g. issued by cert-manager, which also injects
    the CA bundle); a changed file is served from the next check on.

kopf's :class:`kopf.WebhookServer` is given one ready SSL context; calling
``load_cert_chain`` on it again changes the certificate of the next
handshakes, while the server keeps listening. :class:`ReloadingServer` wraps
the server (kopf's public server protocol) to load the current certificate
right after kopf has set the context up.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import ssl
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

import kopf

from kuberesolver.operator.webhook.certs import (
    Lifetimes,
    Material,
    bundle_of,
    ca_bundle_patch,
    issue_ca,
    issue_leaf,
    keep_trusted,
    material_of,
    plan,
    seconds_left,
    secret_body,
    serving_names,
)

__all__ = [
    "CertKeeper",
    "ReloadingServer",
    "TlsApi",
    "TlsSettings",
    "TlsSettingsError",
    "placeholder",
]

_log = logging.getLogger("kuberesolver.operator.webhook")
_DAY: Final = 86400
_LIFETIMES: Final = Lifetimes()
_SECRET: Final = "kuberesolver-webhook-tls"
_NAMESPACE: Final = "kuberesolver-system"
_SERVICE: Final = "kuberesolver-webhook"
_CONFIGURATION: Final = "kuberesolver-mounts"


class TlsApi(Protocol):
    """The calls the leader makes (:class:`~kuberesolver.operator.runtime.kube.Kube` has them)."""

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    async def create_secret(self, body: dict[str, Any]) -> dict[str, Any]: ...
    async def replace_secret(self, body: dict[str, Any]) -> dict[str, Any]: ...
    async def get_mutating_webhook(self, name: str) -> dict[str, Any] | None: ...
    async def patch_mutating_webhook(self, name: str, ops: list[dict[str, Any]]) -> None: ...


class TlsSettingsError(ValueError):
    """A webhook TLS setting that cannot be used."""


@dataclass(frozen=True, slots=True)
class TlsSettings:
    mode: str = "self"
    cert_dir: str = ""
    secret: str = _SECRET
    namespace: str = _NAMESPACE
    service: str = _SERVICE
    configuration: str = _CONFIGURATION
    extra_names: tuple[str, ...] = ()
    lifetimes: Lifetimes = _LIFETIMES
    check_s: float = 60.0

    @property
    def names(self) -> tuple[str, ...]:
        return serving_names(self.service, self.namespace, self.extra_names)

    @classmethod
    def from_env(cls, env: os._Environ[str] | dict[str, str] | None = None) -> TlsSettings:
        """``KUBERESOLVER_WEBHOOK_*`` (see the README's webhook section)."""
        e = os.environ if env is None else env

        def get(name: str, default: str) -> str:
            return e.get(f"KUBERESOLVER_WEBHOOK_{name}", "").strip() or default

        def number(name: str, default: int, lo: int) -> int:
            raw = get(name, str(default))
            try:
                value = int(raw)
            except ValueError:
                raise TlsSettingsError(
                    f"KUBERESOLVER_WEBHOOK_{name}={raw!r}: not a whole number"
                ) from None
            if value < lo:
                raise TlsSettingsError(f"KUBERESOLVER_WEBHOOK_{name}={value}: must be >= {lo}")
            return value

        cert_dir = get("CERT_DIR", "")
        mode = get("TLS", "files" if cert_dir else "self")
        if mode not in ("self", "files"):
            raise TlsSettingsError(f"KUBERESOLVER_WEBHOOK_TLS={mode!r}: must be self or files")
        if mode == "files" and not cert_dir:
            raise TlsSettingsError(
                "KUBERESOLVER_WEBHOOK_TLS=files needs KUBERESOLVER_WEBHOOK_CERT_DIR"
            )
        try:
            lifetimes = Lifetimes(
                leaf_s=number("CERT_LIFETIME_S", 90 * _DAY, 3),
                ca_s=number("CA_LIFETIME_S", 3650 * _DAY, 9),
            )
        except ValueError as exc:
            raise TlsSettingsError(str(exc)) from None
        namespace = get("NAMESPACE", e.get("KUBERESOLVER_LEASE_NAMESPACE", "").strip())
        return cls(
            mode=mode,
            cert_dir=cert_dir,
            secret=get("SECRET", _SECRET),
            namespace=namespace or _NAMESPACE,
            service=get("SERVICE", _SERVICE),
            configuration=get("CONFIGURATION", _CONFIGURATION),
            extra_names=tuple(n.strip() for n in get("EXTRA_NAMES", "").split(",") if n.strip()),
            lifetimes=lifetimes,
            check_s=float(number("TLS_CHECK_S", 60, 1)),
        )


def write_pair(directory: Path, material: Material) -> tuple[Path, Path]:
    """``tls.crt`` and ``tls.key`` (mode 0600) in ``directory``; their paths."""
    cert, key = directory / "tls.crt", directory / "tls.key"
    cert.write_bytes(material.cert)
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(material.key)
    return cert, key


def load_into(context: ssl.SSLContext, material: Material) -> None:
    """Serve ``material`` from the next handshake on (``ssl`` reads only files: a private
    temporary directory, removed at once).

    It is tried on a scratch context first: OpenSSL installs the certificate
    before it checks the key, so a bad pair would leave the live context broken.
    """
    with tempfile.TemporaryDirectory(prefix="kuberesolver-tls-") as tmp:
        files = write_pair(Path(tmp), material)
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(*files)
        context.load_cert_chain(*files)


def placeholder(names: tuple[str, ...]) -> Material:
    """A throwaway certificate that nobody trusts, served until the real one is loaded."""
    now = datetime.datetime.now(datetime.UTC)
    ca_cert, ca_key = issue_ca(now, 3 * 3600)
    cert, key = issue_leaf(ca_cert, ca_key, names, now, 3600)
    return Material(cert, key, ca_cert, ca_key)


class CertKeeper:
    """Keeps the context serving the current certificate; as leader (self mode), keeps the
    Secret and the CA bundle. :meth:`run` loops until cancelled."""

    def __init__(
        self,
        settings: TlsSettings,
        api: TlsApi | None,
        leading: Callable[[], bool],
        context: ssl.SSLContext,
    ) -> None:
        if settings.mode == "self" and api is None:
            raise ValueError("self-managed TLS needs the API")
        self.settings = settings
        self._api = api
        self._leading = leading
        self.context = context
        self.served: Material | None = None
        self._wake = asyncio.Event()

    async def run(self) -> None:
        while True:
            try:
                material = await self._current()
            except Exception as exc:  # an API error: keep serving what we have
                _log.warning("webhook TLS: %s", exc)
            else:
                if material is not None:
                    self.serve(material)
            # Quick retries until a certificate is served, then every check period.
            period = self.settings.check_s if self.served is not None else 1.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), period)
            self._wake.clear()

    def serve(self, material: Material, force: bool = False) -> None:
        """Load ``material`` into the context unless it is already served."""
        served = self.served
        if not force and served is not None and served.fingerprint() == material.fingerprint():
            return
        try:
            load_into(self.context, material)
        except (ssl.SSLError, OSError, ValueError) as exc:
            _log.error("webhook TLS: the certificate cannot be served: %s", exc)
            return
        self.served = material
        _log.info("webhook TLS: serving certificate serial %x", material.serial)

    def seconds_left(self) -> float | None:
        """Until the served certificate expires; None while none is served."""
        served = self.served
        if served is None:
            return None
        return seconds_left(served.cert, datetime.datetime.now(datetime.UTC))

    def reload(self) -> None:
        """Load the current certificate again (kopf has just set the context up)."""
        if self.served is not None:
            self.serve(self.served, force=True)
        self._wake.set()

    async def _current(self) -> Material | None:
        s = self.settings
        if s.mode == "files":
            d = Path(s.cert_dir)
            cert, key = (d / "tls.crt").read_bytes(), (d / "tls.key").read_bytes()
            ca = (d / "ca.crt").read_bytes() if (d / "ca.crt").exists() else b""
            return Material(cert, key, ca, b"")
        assert self._api is not None
        secret = await self._api.get_secret(s.namespace, s.secret)
        if self._leading():
            await self._keep(secret)
        # The leader too serves what it read: what it wrote is served from its next round
        # on, as by every other replica, once the patched bundle had time to reach the
        # apiservers.
        return material_of(secret)

    async def _keep(self, secret: dict[str, Any] | None) -> None:
        """As leader: renew the Secret's material when due, and keep its bundle in the
        configuration.

        The bundle is patched before a changed Secret is written: a CA is trusted
        before anything it signed is served.
        """
        assert self._api is not None
        s = self.settings
        now = datetime.datetime.now(datetime.UTC)
        config = await self._api.get_mutating_webhook(s.configuration)
        if config is None:
            _log.warning("webhook TLS: no MutatingWebhookConfiguration %r", s.configuration)
        decided = plan(material_of(secret), s.names, now, s.lifetimes)
        material = decided.material
        if decided.changed:
            material = keep_trusted(material, bundle_of(config), now)
        ops = ca_bundle_patch(config, material.bundle) if config is not None else None
        if ops is not None:
            await self._api.patch_mutating_webhook(s.configuration, ops)
            _log.info("webhook TLS: caBundle patched into %s", s.configuration)
        if not decided.changed:
            return
        body = secret_body(
            s.namespace, s.secret, material,
            ((secret or {}).get("metadata") or {}).get("resourceVersion"),
        )  # fmt: skip
        if secret is None:
            await self._api.create_secret(body)
        else:
            await self._api.replace_secret(body)
        _log.info(
            "webhook TLS: Secret %s/%s written (serial %x): %s",
            s.namespace, s.secret, material.serial, "; ".join(decided.reasons),
        )  # fmt: skip


class ReloadingServer:
    """kopf's webhook server, with the keeper's certificate loaded whenever kopf (re)starts it.

    It follows kopf's documented server protocol: called with the webhook
    function, it yields client configurations.
    """

    def __init__(self, server: kopf.WebhookServer, keeper: CertKeeper) -> None:
        self.server = server
        self.keeper = keeper

    async def __call__(self, fn: Any) -> AsyncIterator[Any]:
        async for client_config in self.server(fn):
            self.keeper.reload()  # kopf loaded its startup files into the context
            yield client_config
