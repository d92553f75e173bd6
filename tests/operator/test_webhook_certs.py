"""The webhook's TLS plan (pure): issue, renew at a third of the lifetime left, stage a CA."""

from __future__ import annotations

import base64
import datetime
import ssl
from pathlib import Path

import pytest
from cryptography import x509

from kuberesolver.operator.webhook.certs import (
    Lifetimes,
    Material,
    bundle_of,
    ca_bundle_patch,
    keep_trusted,
    material_of,
    plan,
    secret_body,
    serving_names,
)
from kuberesolver.operator.webhook.tls import TlsSettings, TlsSettingsError, write_pair

NAMES = serving_names("kuberesolver-webhook", "kuberesolver-system", ["127.0.0.1"])
T0 = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
LT = Lifetimes(leaf_s=900, ca_s=9000)


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def certs(pem: bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pem)


def verifies(material: Material, tmp_path: Path, bundle: bytes | None = None) -> bool:
    """Whether a TLS client trusting ``bundle`` (default: the material's) accepts its leaf.

    OpenSSL's own chain check, as the apiserver's client does with caBundle
    (at the real current time, so only for fresh material).
    """
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(*write_pair(tmp_path, material))
    client = ssl.create_default_context(cadata=(bundle or material.bundle).decode())
    client.check_hostname = True
    c2s, s2c = ssl.MemoryBIO(), ssl.MemoryBIO()
    cs = client.wrap_bio(s2c, c2s, server_hostname=NAMES[0])
    ss = server.wrap_bio(c2s, s2c, server_side=True)
    for _ in range(10):
        done = 0
        for side in (cs, ss):
            try:
                side.do_handshake()
                done += 1
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError:
                return False
        if done == 2:
            return True
    return False


def test_names_are_the_service_dns_names_then_extras() -> None:
    assert NAMES == (
        "kuberesolver-webhook.kuberesolver-system.svc",
        "kuberesolver-webhook.kuberesolver-system.svc.cluster.local",
        "127.0.0.1",
    )


def test_first_plan_issues_a_ca_and_a_leaf_for_the_names(tmp_path: Path) -> None:
    now = datetime.datetime.now(datetime.UTC)
    p = plan(None, NAMES, now, Lifetimes())
    assert p.changed
    assert p.reasons == ("no certificate yet",)
    (ca,) = certs(p.material.bundle)
    leaf = x509.load_pem_x509_certificate(p.material.cert)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == list(NAMES[:2])
    assert [str(i) for i in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    leaf.verify_directly_issued_by(ca)
    assert verifies(p.material, tmp_path)
    other = plan(None, NAMES, now, Lifetimes()).material
    assert not verifies(p.material, tmp_path, bundle=other.bundle)


def test_unchanged_until_a_third_of_the_lifetime_is_left() -> None:
    first = plan(None, NAMES, T0, LT).material
    assert not plan(first, NAMES, at(500), LT).changed  # 400 s of 900 (+60 s backdating) left
    renewed = plan(first, NAMES, at(700), LT)  # 200 s left < 960 / 3
    assert renewed.changed
    assert "due" in renewed.reasons[0]
    assert renewed.material.serial != first.serial
    # Only the leaf: the same CA, the same bundle; the new leaf chains to it.
    assert renewed.material.bundle == first.bundle
    assert renewed.material.ca_key == first.ca_key
    leaf = x509.load_pem_x509_certificate(renewed.material.cert)
    leaf.verify_directly_issued_by(certs(first.bundle)[0])


def test_other_names_or_a_shorter_lifetime_setting_reissue_the_leaf() -> None:
    first = plan(None, NAMES, T0, LT).material
    assert "other names" in plan(first, NAMES[:2], at(1), LT).reasons[0]
    shorter = plan(first, NAMES, at(1), Lifetimes(leaf_s=60, ca_s=9000))
    assert "longer-lived" in shorter.reasons[0]
    assert shorter.material.bundle == first.bundle


def test_a_mismatched_or_garbled_secret_starts_over() -> None:
    first = plan(None, NAMES, T0, LT).material
    other = plan(None, NAMES, T0, LT).material
    swapped = Material(first.cert, other.key, first.bundle, first.ca_key)
    assert "key does not match" in plan(swapped, NAMES, at(1), LT).reasons[0]
    wrong_ca = Material(first.cert, first.key, first.bundle, other.ca_key)
    fresh = plan(wrong_ca, NAMES, at(1), LT)
    assert fresh.material.bundle != first.bundle
    garbled = Material(b"nope", first.key, first.bundle, first.ca_key)
    assert "unusable" in plan(garbled, NAMES, at(1), LT).reasons[0]


def test_the_ca_is_staged_before_it_signs_and_the_old_one_stays_trusted() -> None:
    lt = Lifetimes(leaf_s=900, ca_s=2700)  # CA due 1800 s after issue; stage 300 s
    m = plan(None, NAMES, T0, lt).material
    (ca_a,) = certs(m.bundle)
    # Run the leader's loop every 50 s and watch every served leaf stay trusted by
    # the bundle that was in place before it was served.
    t = 0.0
    staged_seen = promoted_at = None
    while t < 2700:
        t += 50
        p = plan(m, NAMES, at(t), lt)
        if p.changed:
            new_cas = certs(p.material.bundle)
            leaf = x509.load_pem_x509_certificate(p.material.cert)
            if p.material.cert != m.cert:  # a new leaf: its CA was already in the old bundle
                assert any(_issued(leaf, ca) for ca in certs(m.bundle)), (t, p.reasons)
            if p.material.ca_next_key and staged_seen is None:
                staged_seen = t
                assert len(new_cas) == 2
                assert new_cas[0] == ca_a
                assert _issued(leaf, ca_a)  # the staged CA signs nothing yet
            if new_cas[0] != ca_a and promoted_at is None:
                promoted_at = t
                assert ca_a in new_cas  # the old CA stays while its leaf may be served
            m = p.material
    assert staged_seen is not None
    assert promoted_at is not None
    assert staged_seen >= 1800 - 60  # the CA's third left (it is backdated 60 s)
    assert promoted_at - staged_seen >= lt.stage_s
    assert ca_a not in certs(m.bundle) or at(2700) < ca_a.not_valid_after_utc


def _issued(leaf: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        leaf.verify_directly_issued_by(ca)
    except Exception:
        return False
    return True


def test_lifetimes_refuse_a_ca_shorter_than_three_leaves() -> None:
    with pytest.raises(ValueError, match="at least three"):
        Lifetimes(leaf_s=100, ca_s=299)


def test_secret_round_trip_and_type() -> None:
    m = plan(None, NAMES, T0, LT).material
    body = secret_body("ns", "tls", m, "42")
    assert body["type"] == "kubernetes.io/tls"
    assert body["metadata"]["resourceVersion"] == "42"
    assert set(body["data"]) == {"tls.crt", "tls.key", "ca.crt", "ca.key"}
    assert material_of(body) == m
    assert material_of(None) is None
    assert material_of({"data": {"tls.crt": "eA=="}}) is None


def test_ca_bundle_patch_sets_every_webhook_and_is_none_when_set() -> None:
    config = {"webhooks": [{"name": "a", "clientConfig": {"service": {}}}, {"name": "b"}]}
    ops = ca_bundle_patch(config, b"PEM")
    want = base64.b64encode(b"PEM").decode()
    assert ops == [
        {"op": "test", "path": "/webhooks/0/name", "value": "a"},
        {"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": want},
        {"op": "test", "path": "/webhooks/1/name", "value": "b"},
        {"op": "add", "path": "/webhooks/1/clientConfig/caBundle", "value": want},
    ]
    done = {"webhooks": [{"name": "a", "clientConfig": {"caBundle": want}}]}
    assert ca_bundle_patch(done, b"PEM") is None


def test_settings_defaults_and_bad_values() -> None:
    s = TlsSettings.from_env({})
    assert (s.mode, s.secret, s.configuration) == ("self", "kuberesolver-webhook-tls",
                                                   "kuberesolver-mounts")  # fmt: skip
    assert s.names[0] == "kuberesolver-webhook.kuberesolver-system.svc"
    assert TlsSettings.from_env({"KUBERESOLVER_WEBHOOK_CERT_DIR": "/d"}).mode == "files"
    assert TlsSettings.from_env({"KUBERESOLVER_LEASE_NAMESPACE": "ops"}).namespace == "ops"
    with pytest.raises(TlsSettingsError, match="self or files"):
        TlsSettings.from_env({"KUBERESOLVER_WEBHOOK_TLS": "acme"})
    with pytest.raises(TlsSettingsError, match="needs KUBERESOLVER_WEBHOOK_CERT_DIR"):
        TlsSettings.from_env({"KUBERESOLVER_WEBHOOK_TLS": "files"})
    with pytest.raises(TlsSettingsError, match="CERT_LIFETIME_S='soon'"):
        TlsSettings.from_env({"KUBERESOLVER_WEBHOOK_CERT_LIFETIME_S": "soon"})
    with pytest.raises(TlsSettingsError, match="at least three"):
        TlsSettings.from_env({"KUBERESOLVER_WEBHOOK_CERT_LIFETIME_S": "3600",
                              "KUBERESOLVER_WEBHOOK_CA_LIFETIME_S": "3600"})  # fmt: skip


@pytest.mark.parametrize("leaf_s", [25, 37, 90 * 86400])
def test_a_fresh_certificate_is_kept_whatever_the_lifetime_and_the_clock_fraction(
    leaf_s: int,
) -> None:
    lt = Lifetimes(leaf_s=leaf_s, ca_s=3 * leaf_s)
    now = T0 + datetime.timedelta(microseconds=999_999)
    first = plan(None, NAMES, now, lt).material
    assert not plan(first, NAMES, now + datetime.timedelta(seconds=1), lt).changed


def test_starting_over_keeps_what_the_apiserver_trusts_until_it_expires() -> None:
    old = plan(None, NAMES, T0, LT).material
    config = {"webhooks": [{"name": "a", "clientConfig": {"caBundle": base64.b64encode(
        old.bundle).decode()}}]}  # fmt: skip
    assert bundle_of(config) == old.bundle
    assert bundle_of({"webhooks": [{"name": "a"}]}) == b""
    fresh = plan(None, NAMES, at(10), LT).material
    kept = keep_trusted(fresh, bundle_of(config), at(10))
    assert certs(kept.bundle) == certs(fresh.bundle) + certs(old.bundle)
    assert (kept.cert, kept.key, kept.ca_key) == (fresh.cert, fresh.key, fresh.ca_key)
    assert keep_trusted(kept, old.bundle, at(10)) == kept  # once
    assert keep_trusted(fresh, old.bundle, at(LT.ca_s + 1)) == fresh  # expired: dropped
    assert keep_trusted(fresh, old.cert, at(10)) == fresh  # a leaf is no CA
    assert keep_trusted(fresh, b"garbage", at(10)) == fresh
