"""The webhook's TLS material, planned without I/O: a CA, a serving certificate, their rotation.

Everything the operator keeps lives in ONE Secret (``kubernetes.io/tls``), so
every replica serves the same certificate:

``tls.crt`` / ``tls.key``
    the serving (leaf) certificate for the webhook Service's DNS names;
``ca.crt``
    the CA bundle the apiserver trusts (patched into the
    MutatingWebhookConfiguration's ``caBundle``): the signing CA first, then a
    staged next CA and older CAs that have not expired;
``ca.key`` / ``ca-next.key``
    the signing CA's key, and the staged next CA's key while one is staged.

Rotation: only the leaf rotates under a long-lived CA. A new leaf is issued
once less than a third of its lifetime is left; it chains to a CA the bundle
already holds, so the bundle does not change and no apiserver ever sees a
certificate it does not yet trust (the apiserver's copy of the configuration
may lag a patch, and replicas reload the Secret at their own pace). The CA
itself is replaced the same way one step earlier: once less than a third of
its lifetime is left, a next CA is *staged* (added to the bundle, signing
nothing); it starts signing only after it has been in the bundle for a third
of a leaf lifetime, and the old CA stays in the bundle until it expires.

:func:`plan` decides; :func:`issue_ca`, :func:`issue_leaf` build (keys are
random, nothing else is read); :func:`secret_body` and :func:`ca_bundle_patch`
build API bodies; :func:`material_of` reads a Secret.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CA_KEY",
    "CA_NEXT_KEY",
    "Lifetimes",
    "Material",
    "Plan",
    "bundle_of",
    "ca_bundle_patch",
    "issue_ca",
    "issue_leaf",
    "keep_trusted",
    "material_of",
    "plan",
    "renewal_due",
    "secret_body",
    "serial_of",
    "serving_names",
]

CA_KEY: Final = "ca.key"
CA_NEXT_KEY: Final = "ca-next.key"
_MAX_SKEW: Final = datetime.timedelta(seconds=60)
_DAY: Final = 86400


@dataclass(frozen=True, slots=True)
class Lifetimes:
    """How long a serving certificate and a CA are valid, in seconds."""

    leaf_s: int = 90 * _DAY
    ca_s: int = 3650 * _DAY

    def __post_init__(self) -> None:
        if self.leaf_s < 3:
            raise ValueError(f"a certificate lifetime of {self.leaf_s} s is too short")
        if self.ca_s < 3 * self.leaf_s:
            raise ValueError(
                f"the CA lifetime ({self.ca_s} s) must be at least three certificate "
                f"lifetimes ({self.leaf_s} s)"
            )

    @property
    def stage_s(self) -> int:
        """How long a new CA is trusted before it signs anything."""
        return self.leaf_s // 3


@dataclass(frozen=True, slots=True)
class Material:
    """The Secret's PEM data (``ca_next_key`` is empty while no CA is staged)."""

    cert: bytes
    key: bytes
    bundle: bytes
    ca_key: bytes
    ca_next_key: bytes = b""

    @property
    def serial(self) -> int:
        return serial_of(self.cert)

    def fingerprint(self) -> str:
        """A digest of what is served (certificate and key)."""
        return hashlib.sha256(self.cert + b"\0" + self.key).hexdigest()


@dataclass(frozen=True, slots=True)
class Plan:
    """The material to keep, and why it changed (empty ``reasons``: unchanged)."""

    material: Material
    reasons: tuple[str, ...]

    @property
    def changed(self) -> bool:
        return bool(self.reasons)


def serving_names(service: str, namespace: str, extra: Sequence[str] = ()) -> tuple[str, ...]:
    """The names a Service-routed webhook is called by, then ``extra`` (DNS names or IPs)."""
    names = [f"{service}.{namespace}.svc", f"{service}.{namespace}.svc.cluster.local"]
    names += [n for n in extra if n and n not in names]
    return tuple(names)


def _skew(lifetime: datetime.timedelta) -> datetime.timedelta:
    """Backdating for clocks a little behind ours: a tenth of the lifetime, at most 60 s,
    in whole seconds (certificates count whole seconds)."""
    return min(_MAX_SKEW, datetime.timedelta(seconds=int(lifetime.total_seconds()) // 10))


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def issue_ca(now: datetime.datetime, lifetime_s: int) -> tuple[bytes, bytes]:
    """A new self-signed CA (ECDSA P-256): its certificate and key, PEM."""
    now = now.replace(microsecond=0)
    key = ec.generate_private_key(ec.SECP256R1())
    lifetime = datetime.timedelta(seconds=lifetime_s)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "kuberesolver"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"kuberesolver-webhook-ca-{now:%Y%m%d%H%M%S}"),
        ]
    )
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _skew(lifetime))
        .not_valid_after(now + lifetime)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _pem(cert), _pem_key(key)


def issue_leaf(
    ca_cert: bytes, ca_key: bytes, names: Sequence[str], now: datetime.datetime, lifetime_s: int
) -> tuple[bytes, bytes]:
    """A serving certificate for ``names`` signed by the CA (never outliving it), and its key."""
    now = now.replace(microsecond=0)
    ca = x509.load_pem_x509_certificate(ca_cert)
    signer = serialization.load_pem_private_key(ca_key, password=None)
    if not isinstance(signer, ec.EllipticCurvePrivateKey):
        raise ValueError("the CA key is not an ECDSA key")
    key = ec.generate_private_key(ec.SECP256R1())
    lifetime = datetime.timedelta(seconds=lifetime_s)
    sans: list[x509.GeneralName] = []
    for n in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            sans.append(x509.DNSName(n))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(max(now - _skew(lifetime), ca.not_valid_before_utc))
        .not_valid_after(min(now + lifetime, ca.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False
        )
        .sign(signer, hashes.SHA256())
    )
    return _pem(cert), _pem_key(key)


def serial_of(cert_pem: bytes) -> int:
    """The serial number of the first certificate in ``cert_pem``."""
    return int(x509.load_pem_x509_certificate(cert_pem).serial_number)


def seconds_left(cert_pem: bytes, now: datetime.datetime) -> float:
    """Seconds until the first certificate in ``cert_pem`` expires (negative: expired)."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    return (cert.not_valid_after_utc - now).total_seconds()


def renewal_due(cert: x509.Certificate, now: datetime.datetime) -> bool:
    """Whether less than a third of the certificate's lifetime is left."""
    begin, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    return (end - now) < (end - begin) / 3


def _names_of(cert: x509.Certificate) -> list[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    dns = [str(n) for n in ext.get_values_for_type(x509.DNSName)]
    ips = [str(ip) for ip in ext.get_values_for_type(x509.IPAddress)]
    return dns + ips


def _same_key(cert: x509.Certificate, key_pem: bytes) -> bool:
    key = serialization.load_pem_private_key(key_pem, password=None)
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    enc = serialization.Encoding.DER
    return bool(key.public_key().public_bytes(enc, pub) == cert.public_key().public_bytes(enc, pub))


def _signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def plan(
    current: Material | None, names: Sequence[str], now: datetime.datetime, lifetimes: Lifetimes
) -> Plan:
    """What the Secret should hold at ``now``: ``current`` unchanged when it is still good."""
    if current is None:
        return _fresh(names, now, lifetimes, "no certificate yet")
    try:
        return _plan(current, names, now, lifetimes)
    except ValueError as exc:  # unreadable PEM, a key of another kind
        return _fresh(names, now, lifetimes, f"unusable certificate data ({exc})")


def _fresh(names: Sequence[str], now: datetime.datetime, lt: Lifetimes, why: str) -> Plan:
    ca_cert, ca_key = issue_ca(now, lt.ca_s)
    cert, key = issue_leaf(ca_cert, ca_key, names, now, lt.leaf_s)
    return Plan(Material(cert, key, ca_cert, ca_key), (why,))


def _plan(cur: Material, names: Sequence[str], now: datetime.datetime, lt: Lifetimes) -> Plan:
    cas = x509.load_pem_x509_certificates(cur.bundle)
    signer = cas[0]
    if not _same_key(signer, cur.ca_key) or now >= signer.not_valid_after_utc:
        return _fresh(names, now, lt, "the CA key does not match the CA, or the CA expired")
    staged = None
    if cur.ca_next_key:
        staged = next((c for c in cas[1:] if _same_key(c, cur.ca_next_key)), None)
    reasons: list[str] = []
    signer_pem, signer_key = _pem(signer), cur.ca_key
    staged_pem, staged_key = (_pem(staged), cur.ca_next_key) if staged is not None else (b"", b"")
    if staged is None and renewal_due(signer, now):
        staged_pem, staged_key = issue_ca(now, lt.ca_s)
        reasons.append("the CA is due: a next CA is staged in the bundle")
    promoted = False
    # Its age counted from its backdated start: at least stage_s since it was issued.
    staged_for = now - staged.not_valid_before_utc - _MAX_SKEW if staged is not None else None
    if staged_for is not None and staged_for >= datetime.timedelta(seconds=lt.stage_s):
        signer_pem, signer_key, staged_pem, staged_key = staged_pem, staged_key, b"", b""
        promoted = True
        reasons.append("the staged CA signs from now on")
    leaf = x509.load_pem_x509_certificate(cur.cert)
    signer_cert = x509.load_pem_x509_certificate(signer_pem)
    leaf_span = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    allowed = datetime.timedelta(seconds=lt.leaf_s + 1) + _skew(
        datetime.timedelta(seconds=lt.leaf_s)
    )
    why_leaf = (
        "a new CA signs" if promoted
        else "the key does not match" if not _same_key(leaf, cur.key)
        else "not signed by the CA" if not _signed_by(leaf, signer_cert)
        else "other names" if sorted(_names_of(leaf)) != sorted(names)
        else "due (less than a third of its lifetime left)" if renewal_due(leaf, now)
        else "longer-lived than the lifetime setting" if leaf_span > allowed
        else ""
    )  # fmt: skip
    cert, key = cur.cert, cur.key
    if why_leaf:
        cert, key = issue_leaf(signer_pem, signer_key, names, now, lt.leaf_s)
        reasons.append(f"new serving certificate: {why_leaf}")
    # The bundle: the signer, a staged CA, then every older CA until it expires (a
    # replica may still serve a certificate it signed).
    bundle = [signer_pem] + ([staged_pem] if staged_pem else [])
    for ca in cas:
        pem = _pem(ca)
        if pem not in bundle and now < ca.not_valid_after_utc:
            bundle.append(pem)
    material = Material(cert, key, b"".join(bundle), signer_key, staged_key)
    if material.bundle != cur.bundle and not reasons:
        reasons.append("expired CAs left the bundle")
    return Plan(material, tuple(reasons))


def keep_trusted(material: Material, trusted: bytes, now: datetime.datetime) -> Material:
    """``material`` whose bundle also holds every unexpired CA of ``trusted`` (what the
    apiserver trusts now), so a certificate still served by another replica stays trusted
    when the material starts over (a deleted or garbled Secret)."""
    try:
        cas = x509.load_pem_x509_certificates(trusted) if trusted.strip() else []
    except ValueError:
        return material
    bundle = material.bundle
    for ca in cas:
        pem = _pem(ca)
        try:
            is_ca = ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            is_ca = False
        if is_ca and now < ca.not_valid_after_utc and pem not in bundle:
            bundle += pem
    return Material(material.cert, material.key, bundle, material.ca_key, material.ca_next_key)


def bundle_of(config: Mapping[str, Any] | None) -> bytes:
    """The CA bundle of the configuration's first webhook that has one (``b""`` if none)."""
    for hook in (config or {}).get("webhooks") or []:
        raw = (hook.get("clientConfig") or {}).get("caBundle")
        if raw:
            try:
                return base64.b64decode(raw)
            except ValueError:
                return b""
    return b""


def material_of(secret: Mapping[str, Any] | None) -> Material | None:
    """The material in a Secret (as the API returns it), or ``None`` if it holds none."""
    data = (secret or {}).get("data") or {}
    try:
        fields = {k: base64.b64decode(v) for k, v in data.items() if isinstance(v, str)}
    except ValueError:
        return None
    if not all(fields.get(k) for k in ("tls.crt", "tls.key", "ca.crt", CA_KEY)):
        return None
    return Material(
        fields["tls.crt"],
        fields["tls.key"],
        fields["ca.crt"],
        fields[CA_KEY],
        fields.get(CA_NEXT_KEY, b""),
    )


def secret_body(
    namespace: str, name: str, material: Material, resource_version: str | None = None
) -> dict[str, Any]:
    """The Secret to create, or to replace conditionally on ``resource_version``."""
    data = {
        "tls.crt": material.cert,
        "tls.key": material.key,
        "ca.crt": material.bundle,
        CA_KEY: material.ca_key,
    }
    if material.ca_next_key:
        data[CA_NEXT_KEY] = material.ca_next_key
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": {
            "app.kubernetes.io/name": "kuberesolver-operator",
            "app.kubernetes.io/part-of": "kuberesolver",
            "app.kubernetes.io/component": "webhook",
        },
    }
    if resource_version:
        metadata["resourceVersion"] = resource_version
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": metadata,
        "data": {k: base64.b64encode(v).decode("ascii") for k, v in data.items()},
    }


def ca_bundle_patch(config: Mapping[str, Any], bundle: bytes) -> list[dict[str, Any]] | None:
    """A JSON patch setting every webhook's ``caBundle`` in ``config``; ``None`` if all have it.

    Each change is guarded by a ``test`` of the webhook's name, so a
    configuration edited in between is refused (422), not patched at the wrong index.
    """
    want = base64.b64encode(bundle).decode("ascii")
    ops: list[dict[str, Any]] = []
    for i, hook in enumerate(config.get("webhooks") or []):
        if (hook.get("clientConfig") or {}).get("caBundle") == want:
            continue
        ops.append({"op": "test", "path": f"/webhooks/{i}/name", "value": hook.get("name")})
        ops.append({"op": "add", "path": f"/webhooks/{i}/clientConfig/caBundle", "value": want})
    return ops or None
