"""Offline verification: several trust anchors, CRLs, validity periods, roles."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from docex.pki.errors import PkiError
from docex.pki.names import CertRole
from docex.pki.trust import TrustStore
from tests.conftest import Pki

XXZX, XWB = "qingyuan.yangshan.xxzx", "qingyuan.yangshan.xwb"


def _code(trust: TrustStore, cert: x509.Certificate, **kw: object) -> str:
    with pytest.raises(PkiError) as exc:
        trust.verify(cert, **kw)  # type: ignore[arg-type]
    return exc.value.code


def test_county_unit_chain(pki: Pki) -> None:
    cert = pki.creds(XXZX).sign_cert
    assert pki.trust().verify(cert, role=CertRole.SEAL) == [cert, pki.county.certificate]


def test_city_issued_certificate_needs_the_city_anchor(pki: Pki) -> None:
    cert = pki.creds(XWB).sign_cert
    assert pki.trust(city=True).verify(cert)[-1] == pki.city.certificate
    assert _code(pki.trust(city=False), cert) == "certificate_untrusted"


def test_stranger_ca_untrusted(pki: Pki) -> None:
    rogue = pki.new_unit("qingyuan.yangshan.rogue", "阳山县信息中心", ca=pki.stranger)
    assert _code(pki.trust(), rogue.sign_cert) == "certificate_untrusted"
    # even a rogue CA with the county CA's very name is not the county CA
    assert rogue.sign_cert.issuer != pki.county.certificate.subject


def test_expired_and_not_yet_valid(pki: Pki) -> None:
    cert = pki.creds(XXZX).sign_cert
    after = cert.not_valid_after_utc + dt.timedelta(days=1)
    before = cert.not_valid_before_utc - dt.timedelta(days=1)
    assert _code(pki.trust(), cert, at=after) == "certificate_expired"
    assert _code(pki.trust(), cert, at=before) == "certificate_expired"


def test_role_is_checked(pki: Pki) -> None:
    creds = pki.creds(XXZX)
    assert _code(pki.trust(), creds.enc_cert, role=CertRole.SEAL) == "wrong_certificate_role"
    pki.trust().verify(creds.enc_cert, role=CertRole.ENCRYPTION)


def test_revocation_takes_effect_from_its_date(pki: Pki) -> None:
    unit = pki.new_unit("qingyuan.yangshan.trustrev", "吊销测试")
    pki.county.revoke(unit.sign_cert.serial_number, "affiliation_changed")
    trust = pki.trust()
    assert _code(trust, unit.sign_cert) == "certificate_revoked"
    entry = pki.county.crl().get_revoked_certificate_by_serial_number(unit.sign_cert.serial_number)
    assert entry is not None
    trust.verify(unit.sign_cert, at=entry.revocation_date_utc - dt.timedelta(seconds=30))


def test_crl_from_files_and_required(pki: Pki, tmp_path: Path) -> None:
    unit = pki.new_unit("qingyuan.yangshan.filerev", "文件吊销测试")
    pki.county.revoke(unit.sign_cert.serial_number)
    bundle = tmp_path / "anchors.pem"
    bundle.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM)
                                for c in (pki.county.certificate, pki.city.certificate)))
    crl = pki.county.publish_crl()
    trust = TrustStore.from_files([bundle], [crl, tmp_path / "missing.pem"])
    assert len(trust.anchors) == 2
    assert _code(trust, unit.sign_cert) == "certificate_revoked"
    without = TrustStore.from_files([bundle], require_crl=True)
    assert _code(without, pki.creds(XXZX).sign_cert) == "crl_missing"
    TrustStore.from_files([bundle]).verify(unit.sign_cert)  # no CRL, not required: not checked


def test_forged_crl_is_ignored(pki: Pki) -> None:
    """A CRL naming the county CA but signed by another key neither revokes nor counts."""
    victim = pki.creds(XXZX).sign_cert
    now = dt.datetime.now(dt.UTC)
    forged = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(pki.county.certificate.subject)
        .last_update(now - dt.timedelta(minutes=1))
        .next_update(now + dt.timedelta(days=1))
        .add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(victim.serial_number).revocation_date(now).build()
        )
        .sign(pki.stranger.signing_key(), hashes.SHA256())
    )
    TrustStore([pki.county.certificate], [forged]).verify(victim)
    assert _code(TrustStore([pki.county.certificate], [forged], require_crl=True), victim) == "crl_missing"


def test_add_crl_replaces_the_older_one(pki: Pki) -> None:
    unit = pki.new_unit("qingyuan.yangshan.newer", "更新吊销列表")
    trust = TrustStore([pki.county.certificate], [pki.county.crl()])
    trust.verify(unit.sign_cert)
    pki.county.revoke(unit.sign_cert.serial_number)
    trust.add_crl(pki.county.crl())
    assert len(trust.crls) == 1
    assert _code(trust, unit.sign_cert) == "certificate_revoked"


def test_an_older_crl_never_replaces_a_newer_one(pki) -> None:  # type: ignore[no-untyped-def]
    import datetime as dt

    from docex.pki.trust import TrustStore

    newer = pki.county.crl()
    store = TrustStore([pki.county.certificate], [newer])
    older = newer  # same issuer; build an older one by hand-picking last_update
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    older = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(newer.issuer)
        .last_update(newer.last_update_utc - dt.timedelta(days=1))
        .next_update(newer.next_update_utc or newer.last_update_utc)
        .sign(pki.county.signing_key(), hashes.SHA256())
    )
    store.add_crl(older)
    assert store.crls == [newer]
