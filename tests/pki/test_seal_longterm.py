"""Long-term validity of seals, with a controlled clock: the proofs of existence are judged
at `now` (ETSI EN 319 102-1), an expiring archive timestamp makes the seal INDETERMINATE
(`seal_renewal_needed`), and an LTA renewal makes it VALID again years later. Seals are
B-LT from the start: a unit's folder holds its CRL, a stale CRL is refused for sealing.

A CA of its own (20 years) so that certificates can outlive the one TSA and not the other."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from docex.pki.ca import CertificateAuthority
from docex.pki.credentials import UnitCredentials
from docex.pki.keys import load_crl
from docex.pki.seal import SealError, apply_seal, renew_seal, verify_seals
from docex.pki.tsa import TimeStampAuthority

UNIT = "qingyuan.yangshan.dag"  # 阳山县档案馆
NOW = dt.datetime.now(dt.UTC)
TEN_YEARS = NOW + dt.timedelta(days=3652)


@dataclass
class LongTerm:
    ca: CertificateAuthority
    unit: UnitCredentials
    unit_dir: Path
    short_tsa: TimeStampAuthority  # certificate valid 2 years
    long_tsa: TimeStampAuthority  # certificate valid 15 years
    sealed: bytes


@pytest.fixture(scope="module")
def lt(tmp_path_factory: pytest.TempPathFactory, seal_plain_pdf: bytes, seal_image_png: bytes) -> LongTerm:
    root = tmp_path_factory.mktemp("longterm")
    ca = CertificateAuthority.init(root / "ca", "阳山县信息中心", None, validity_days=7300)
    ca.issue_unit(UNIT, "阳山县档案馆", root / "unit", None)
    ca.issue_tsa("阳山县信息中心时间戳服务", root / "tsa-2y", None, validity_days=730)
    ca.issue_tsa("阳山县信息中心时间戳服务（新）", root / "tsa-15y", None, validity_days=5475)
    unit = UnitCredentials.load(root / "unit", None)
    short_tsa = TimeStampAuthority.load(root / "tsa-2y", None)
    sealed = apply_seal(
        seal_plain_pdf, cert=unit.sign_cert, key=unit.sign_key, image_png=seal_image_png,
        chain=[ca.certificate], crls=[load_crl(root / "unit" / "crl.pem")], timestamper=short_tsa.timestamper(),
        page=1, at=(150, 200),
    )
    return LongTerm(ca, unit, root / "unit", short_tsa, TimeStampAuthority.load(root / "tsa-15y", None), sealed)


def _verify(lt: LongTerm, pdf: bytes, now: dt.datetime, margin_days: int = 60) -> tuple[str, str | None, str | None]:
    report = verify_seals(pdf, [lt.ca.certificate], expected_address=UNIT, long_term=True, now=now,
                          renewal_margin=dt.timedelta(days=margin_days))
    return report.status, report.error, report.renew_by


def test_issuing_a_unit_writes_its_crl_so_the_first_seal_is_b_lt(lt: LongTerm) -> None:
    crl = load_crl(lt.unit_dir / "crl.pem")
    assert crl.issuer == lt.ca.certificate.subject and crl.next_update_utc is not None and crl.next_update_utc > NOW
    report = verify_seals(lt.sealed, [lt.ca.certificate], expected_address=UNIT)
    assert report.ok and report.seals[0].pades_level == "B-LTA"


def test_valid_today(lt: LongTerm) -> None:
    status, error, renew_by = _verify(lt, lt.sealed, NOW)
    assert (status, error) == ("VALID", None)
    assert renew_by is not None and renew_by[:10] == lt.short_tsa.cert.not_valid_after_utc.isoformat()[:10]


def test_ten_years_on_the_seal_needs_renewal(lt: LongTerm) -> None:
    """The signature itself stays proven (timestamped while all was valid): INDETERMINATE,
    not INVALID, and not VALID as it was before."""
    status, error, _ = _verify(lt, lt.sealed, TEN_YEARS)
    assert (status, error) == ("INDETERMINATE", "seal_renewal_needed")
    report = verify_seals(lt.sealed, [lt.ca.certificate], long_term=True, now=TEN_YEARS)
    assert not report.ok and all(s.ok for s in report.signatures)  # each signature still verifies


def test_about_to_expire_is_reported_within_the_margin(lt: LongTerm) -> None:
    expires = lt.short_tsa.cert.not_valid_after_utc
    assert _verify(lt, lt.sealed, expires - dt.timedelta(days=30), margin_days=60)[:2] == ("INDETERMINATE", "seal_renewal_needed")
    assert _verify(lt, lt.sealed, expires - dt.timedelta(days=30), margin_days=10)[:2] == ("VALID", None)


def test_renewal_keeps_the_seal_valid_ten_years_on(lt: LongTerm) -> None:
    renewed = renew_seal(lt.sealed, anchors=[lt.ca.certificate], crls=[lt.ca.crl()], timestamper=lt.long_tsa.timestamper())
    assert renewed.startswith(lt.sealed)  # an incremental update: the sealed bytes are untouched
    status, error, renew_by = _verify(lt, renewed, TEN_YEARS)
    assert (status, error) == ("VALID", None)
    assert renew_by is not None and renew_by[:10] == lt.long_tsa.cert.not_valid_after_utc.isoformat()[:10]
    report = verify_seals(renewed, [lt.ca.certificate], expected_address=UNIT)
    assert [s.kind for s in report.signatures] == ["seal", "document_timestamp", "document_timestamp"]
    changed = bytearray(renewed)
    changed[len(lt.sealed) // 2] ^= 0x01
    assert verify_seals(bytes(changed), [lt.ca.certificate], long_term=True, now=TEN_YEARS).error == "seal_modified"


def test_sealing_with_a_stale_crl_is_refused(lt: LongTerm, seal_plain_pdf: bytes, seal_image_png: bytes) -> None:
    stale = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(lt.ca.certificate.subject)
        .last_update(NOW - dt.timedelta(days=10))
        .next_update(NOW - dt.timedelta(days=3))
        .sign(lt.ca.signing_key(), hashes.SHA256())  # type: ignore[arg-type]
    )
    with pytest.raises(SealError) as exc:
        apply_seal(seal_plain_pdf, cert=lt.unit.sign_cert, key=lt.unit.sign_key, image_png=seal_image_png,
                   chain=[lt.ca.certificate], crls=[stale], timestamper=lt.short_tsa.timestamper(), page=1, at=(150, 200))
    assert exc.value.code == "crl_stale"
